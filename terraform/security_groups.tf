# Traffic allowed, and nothing else:
#   internet --80/443--> ALB --8000--> ECS tasks --5432--> RDS
#                                               --6379--> Redis
#                                               --443---> internet via NAT (ECR, Secrets
#                                                         Manager, Bedrock, LLM APIs)
# Port 8000 is never open to a CIDR: only the ALB's security group reaches the tasks.
# Rules are separate resources (not inline blocks) because the ALB and task groups refer
# to each other.

resource "aws_security_group" "alb" {
  name_prefix = "${local.name}-alb-"
  description = "Application Load Balancer: HTTP/HTTPS from the internet, forwards to the API tasks"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${local.name}-alb" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "ecs_tasks" {
  name_prefix = "${local.name}-ecs-tasks-"
  description = "ECS Fargate tasks (API and worker): port 8000 from the ALB only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${local.name}-ecs-tasks" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "rds" {
  name_prefix = "${local.name}-rds-"
  description = "RDS PostgreSQL: port 5432 from the ECS tasks only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${local.name}-rds" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "redis" {
  name_prefix = "${local.name}-redis-"
  description = "ElastiCache Redis: port 6379 from the ECS tasks only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${local.name}-redis" }

  lifecycle {
    create_before_destroy = true
  }
}

# --- ALB -----------------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "alb_http_ipv4" {
  #checkov:skip=CKV_AWS_260:Public load balancer; port 80 only answers with a redirect to HTTPS when domain_name is set, and is the only listener when it is not.
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from the internet (IPv4)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "alb_http_ipv6" {
  #checkov:skip=CKV_AWS_260:Public load balancer; port 80 only answers with a redirect to HTTPS when domain_name is set, and is the only listener when it is not.
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from the internet (IPv6)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv6         = "::/0"
}

resource "aws_vpc_security_group_ingress_rule" "alb_https_ipv4" {
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from the internet (IPv4)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "alb_https_ipv6" {
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from the internet (IPv6)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv6         = "::/0"
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the API tasks on the app port"
  ip_protocol                  = "tcp"
  from_port                    = local.app_port
  to_port                      = local.app_port
  referenced_security_group_id = aws_security_group.ecs_tasks.id
}

# --- ECS tasks -----------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.ecs_tasks.id
  description                  = "App port from the ALB only"
  ip_protocol                  = "tcp"
  from_port                    = local.app_port
  to_port                      = local.app_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.ecs_tasks.id
  description       = "HTTPS to AWS APIs (ECR, Secrets Manager, S3, Bedrock, CloudWatch) and external LLM APIs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_rds" {
  security_group_id            = aws_security_group.ecs_tasks.id
  description                  = "PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.rds.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_redis" {
  security_group_id            = aws_security_group.ecs_tasks.id
  description                  = "Redis (TLS)"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis.id
}

# --- Data stores ---------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "rds_from_tasks" {
  security_group_id            = aws_security_group.rds.id
  description                  = "PostgreSQL from the ECS tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.ecs_tasks.id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from the ECS tasks"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.ecs_tasks.id
}
