# Public Application Load Balancer in front of the API tasks.
#   domain_name empty: one HTTP listener on 80 forwards to the tasks.
#   domain_name set:   HTTPS on 443 with an ACM certificate (DNS validation); 80 redirects.
# The tasks are registered by IP (awsvpc) on port 8000; /ping is the liveness path
# (200, "pong", no database access), so a slow database does not drain every task.

resource "aws_lb" "main" {
  #checkov:skip=CKV2_AWS_20:Port 80 redirects to HTTPS whenever domain_name is set (aws_lb_listener.http); it forwards plain HTTP only when no domain, hence no certificate, is configured.
  #checkov:skip=CKV2_AWS_28:WAF is an optional extra cost (web ACL plus per-request fees); the API authenticates every tenant request and rate-limits logins itself. Attach a web ACL with aws_wafv2_web_acl_association when needed.
  name                       = "${local.name}-alb"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = aws_subnet.public[*].id
  security_groups            = [aws_security_group.alb.id]
  idle_timeout               = var.alb_idle_timeout
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = local.alb_log_prefix
    enabled = true
  }

  # ELB writes a test object when access logs are switched on; the policy must exist.
  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_lb_target_group" "api" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; the hop to the tasks stays inside the VPC (private subnets, security groups allow only the ALB), and the app serves plain HTTP on 8000.
  name                 = "${local.name}-api"
  port                 = local.app_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = 30

  health_check {
    enabled             = true
    path                = "/ping"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

# --- Listeners -----------------------------------------------------------------------

# One port-80 listener whose action follows domain_name (forward without a domain, redirect
# with one), so that setting domain_name later updates it in place instead of replacing one
# listener by another on the same port.
resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Port 80 only redirects to HTTPS when domain_name is set; it forwards plain HTTP only when no domain, hence no certificate, is configured.
  #checkov:skip=CKV_AWS_103:Same reason: the TLS policy belongs to the HTTPS listener, which exists whenever a certificate can.
  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https_enabled ? "redirect" : "forward"
    target_group_arn = local.https_enabled ? null : aws_lb_target_group.api.arn

    dynamic "redirect" {
      for_each = local.https_enabled ? [1] : []

      content {
        protocol    = "HTTPS"
        port        = "443"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count = local.https_enabled ? 1 : 0

  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.alb_ssl_policy
  certificate_arn   = aws_acm_certificate_validation.api[0].certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}

# --- Certificate and DNS -------------------------------------------------------------

resource "aws_acm_certificate" "api" {
  count = local.https_enabled ? 1 : 0

  domain_name       = var.domain_name
  validation_method = "DNS"

  options {
    certificate_transparency_logging_preference = "ENABLED"
  }

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  # One domain, so exactly one validation record.
  acm_validation = local.https_enabled ? tolist(aws_acm_certificate.api[0].domain_validation_options)[0] : null
}

resource "aws_route53_record" "acm_validation" {
  count = local.manage_dns ? 1 : 0

  zone_id         = var.route53_zone_id
  name            = local.acm_validation.resource_record_name
  type            = local.acm_validation.resource_record_type
  records         = [local.acm_validation.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

# Waits until ACM has issued the certificate (up to 75 minutes). With route53_zone_id the
# record above validates it; without, create the CNAME from the
# certificate_validation_records output (or the ACM console) at your DNS provider.
resource "aws_acm_certificate_validation" "api" {
  count = local.https_enabled ? 1 : 0

  certificate_arn         = aws_acm_certificate.api[0].arn
  validation_record_fqdns = local.manage_dns ? [aws_route53_record.acm_validation[0].fqdn] : null
}

resource "aws_route53_record" "api" {
  count = local.manage_dns ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.main.dns_name
    zone_id                = aws_lb.main.zone_id
    evaluate_target_health = true
  }
}
