provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.tags, {
      Project   = var.project_name
      ManagedBy = "terraform"
    })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# Only regular AZs (no Local or Wavelength Zones), which every service used here supports.
# Sorted names; the first two are used unless var.availability_zones pins them.
data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:The region is a variable, so zone names cannot be fixed here; only the first two sorted regular AZs are used (a new AZ gets a later letter), and var.availability_zones pins them explicitly.
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  name       = var.project_name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = var.aws_region

  azs = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, 2)

  # Names the scripts, the docs and the users' guide rely on (see outputs.tf).
  cluster_name          = "${local.name}-cluster"
  api_service_name      = "${local.name}-service"
  worker_service_name   = "${local.name}-worker"
  api_task_family       = "${local.name}-api"
  worker_task_family    = "${local.name}-worker"
  api_container_name    = "backend"
  worker_container_name = "worker"
  # `mtai migrate --create-logins`, the only task that gets the RDS master's credentials.
  migrate_task_family    = "${local.name}-migrate"
  migrate_container_name = "migrate"
  app_port               = 8000
  log_group_name         = "/ecs/${local.name}"
  codebuild_name         = "${local.name}-backend-build"

  https_enabled = var.domain_name != ""
  app_url       = local.https_enabled ? "https://${var.domain_name}" : "http://${aws_lb.main.dns_name}"
  manage_dns    = var.domain_name != "" && var.route53_zone_id != ""

  # The image Terraform registers; deploys register revisions with sha-<commit> tags.
  image = "${aws_ecr_repository.app.repository_url}:${var.image_tag}"
}
