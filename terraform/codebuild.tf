# CodeBuild project `<project_name>-backend-build` (the users' guide runs
# `aws codebuild start-build --project-name <project_name>-backend-build`). It runs the
# repository's buildspec.yml: docker build, push sha-<commit> to ECR, run `mtai migrate`
# as a one-off Fargate task, register new task definition revisions and update both
# services (scripts/build-and-deploy.sh).
#
# Terraform outputs cannot be read from inside CodeBuild, so every value the build needs
# is passed as a plain environment variable (none of them is secret; see
# local.codebuild_environment). AWS_REGION and AWS_DEFAULT_REGION are set by CodeBuild.
#
# The project always exists, also when github_repository_url is empty: the guide's
# start-build command then reaches a project whose inline buildspec says what is missing,
# instead of failing with "project not found", and a build can still be started with
# --source-type-override/--source-location-override (and --buildspec-override
# buildspec.yml). Setting github_repository_url later updates the project in place.

locals {
  has_repository = var.github_repository_url != ""

  no_source_buildspec = yamlencode({
    version = "0.2"
    phases = {
      build = {
        commands = [
          "echo 'This CodeBuild project has no source: github_repository_url was empty when Terraform last applied.'",
          "echo 'Set github_repository_url in terraform.tfvars and run terraform apply, or start a build with a source override:'",
          "echo '  aws codebuild start-build --project-name ${local.codebuild_name} --source-type-override GITHUB --source-location-override https://github.com/OWNER/REPO --source-version main --buildspec-override buildspec.yml'",
          "exit 1",
        ]
      }
    }
  })

  codebuild_environment = {
    AWS_ACCOUNT_ID         = local.account_id
    PROJECT_NAME           = local.name
    ECR_REPOSITORY_URL     = aws_ecr_repository.app.repository_url
    ECR_REPOSITORY_NAME    = aws_ecr_repository.app.name
    ECS_CLUSTER_NAME       = aws_ecs_cluster.main.name
    ECS_SERVICE_NAME       = aws_ecs_service.api.name
    WORKER_SERVICE_NAME    = aws_ecs_service.worker.name
    API_TASK_FAMILY        = aws_ecs_task_definition.api.family
    WORKER_TASK_FAMILY     = aws_ecs_task_definition.worker.family
    CONTAINER_NAME         = local.api_container_name
    WORKER_CONTAINER_NAME  = local.worker_container_name
    MIGRATE_TASK_FAMILY    = aws_ecs_task_definition.migrate.family
    MIGRATE_CONTAINER_NAME = local.migrate_container_name
    PRIVATE_SUBNET_IDS     = join(",", aws_subnet.private[*].id)
    SECURITY_GROUP_ID      = aws_security_group.ecs_tasks.id
    LOG_GROUP_NAME         = aws_cloudwatch_log_group.app.name
    TARGET_GROUP_ARN       = aws_lb_target_group.api.arn
    ALB_DNS_NAME           = aws_lb.main.dns_name
    # Base URL of the post-deploy /ping check (HTTPS on domain_name when it is set).
    APP_URL = local.app_url
  }
}

resource "aws_cloudwatch_log_group" "codebuild" {
  name              = "/aws/codebuild/${local.codebuild_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

data "aws_iam_policy_document" "codebuild_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["codebuild.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "codebuild" {
  name               = "${local.name}-codebuild"
  description        = "CodeBuild ${local.codebuild_name}: push the image, migrate, deploy to ECS"
  assume_role_policy = data.aws_iam_policy_document.codebuild_assume.json
}

locals {
  ecs_arn_prefix = "arn:${local.partition}:ecs:${local.region}:${local.account_id}"
}

data "aws_iam_policy_document" "codebuild" {
  statement {
    sid     = "BuildLogs"
    actions = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [
      aws_cloudwatch_log_group.codebuild.arn,
      "${aws_cloudwatch_log_group.codebuild.arn}:*",
    ]
  }

  # The deploy script prints the migration task's output from the application log group.
  statement {
    sid       = "ReadAppLogs"
    actions   = ["logs:GetLogEvents", "logs:FilterLogEvents"]
    resources = ["${aws_cloudwatch_log_group.app.arn}:*"]
  }

  # GetAuthorizationToken has no resource-level permissions.
  statement {
    sid       = "ECRAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "ECRPushPull"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImages",
      "ecr:DescribeRepositories",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:ListImages",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = [aws_ecr_repository.app.arn]
  }

  # Task definition registration and lookup have no resource-level permissions.
  statement {
    sid       = "TaskDefinitions"
    actions   = ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"]
    resources = ["*"]
  }

  statement {
    sid     = "DeployServices"
    actions = ["ecs:DescribeServices", "ecs:UpdateService"]
    resources = [
      "${local.ecs_arn_prefix}:service/${local.cluster_name}/${local.api_service_name}",
      "${local.ecs_arn_prefix}:service/${local.cluster_name}/${local.worker_service_name}",
    ]
  }

  # The migration: a one-off task of the migrate task definition (`mtai migrate --create-logins`).
  statement {
    sid       = "RunMigrationTask"
    actions   = ["ecs:RunTask"]
    resources = ["${local.ecs_arn_prefix}:task-definition/${local.migrate_task_family}:*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.main.arn]
    }
  }

  statement {
    sid       = "WatchTasks"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = ["${local.ecs_arn_prefix}:task/${local.cluster_name}/*"]
  }

  statement {
    sid       = "DescribeCluster"
    actions   = ["ecs:DescribeClusters"]
    resources = [aws_ecs_cluster.main.arn]
  }

  # New revisions copy the tags of the latest one (describe-task-definition --include TAGS).
  statement {
    sid     = "TaskDefinitionTags"
    actions = ["ecs:ListTagsForResource"]
    resources = [
      "${local.ecs_arn_prefix}:task-definition/${local.api_task_family}:*",
      "${local.ecs_arn_prefix}:task-definition/${local.worker_task_family}:*",
      "${local.ecs_arn_prefix}:task-definition/${local.migrate_task_family}:*",
    ]
  }

  # Tags given to RegisterTaskDefinition/RunTask (e.g. --propagate-tags) need TagResource.
  statement {
    sid     = "TagOnCreate"
    actions = ["ecs:TagResource"]
    resources = [
      "${local.ecs_arn_prefix}:task-definition/${local.api_task_family}:*",
      "${local.ecs_arn_prefix}:task-definition/${local.worker_task_family}:*",
      "${local.ecs_arn_prefix}:task-definition/${local.migrate_task_family}:*",
      "${local.ecs_arn_prefix}:task/${local.cluster_name}/*",
    ]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RegisterTaskDefinition", "RunTask"]
    }
  }

  statement {
    sid       = "PassTaskRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.ecs_execution.arn, aws_iam_role.ecs_task.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  # Waiting for healthy targets after a deploy; Describe* has no resource-level permissions.
  statement {
    sid       = "TargetHealth"
    actions   = ["elasticloadbalancing:DescribeTargetHealth"]
    resources = ["*"]
  }

  # The project's build output and cache are encrypted with the project key.
  statement {
    sid       = "ProjectKey"
    actions   = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "codebuild" {
  name   = "build-and-deploy"
  role   = aws_iam_role.codebuild.id
  policy = data.aws_iam_policy_document.codebuild.json
}

resource "aws_codebuild_project" "backend" {
  #checkov:skip=CKV_AWS_316:Privileged mode is required to run the Docker daemon that builds the image; the build runs only this repository's buildspec.
  name           = local.codebuild_name
  description    = "Build the ${local.name} image, push it to ECR, migrate and deploy to ECS"
  service_role   = aws_iam_role.codebuild.arn
  encryption_key = aws_kms_key.main.arn
  build_timeout  = 120
  queued_timeout = 120

  artifacts {
    type = "NO_ARTIFACTS"
  }

  environment {
    type                        = "LINUX_CONTAINER"
    compute_type                = var.codebuild_compute_type
    image                       = var.codebuild_image
    image_pull_credentials_type = "CODEBUILD"
    privileged_mode             = true

    dynamic "environment_variable" {
      for_each = local.codebuild_environment

      content {
        name  = environment_variable.key
        value = environment_variable.value
        type  = "PLAINTEXT"
      }
    }
  }

  logs_config {
    cloudwatch_logs {
      status     = "ENABLED"
      group_name = aws_cloudwatch_log_group.codebuild.name
    }

    s3_logs {
      status = "DISABLED"
    }
  }

  source {
    type            = local.has_repository ? "GITHUB" : "NO_SOURCE"
    location        = local.has_repository ? var.github_repository_url : null
    git_clone_depth = local.has_repository ? 1 : null
    buildspec       = local.has_repository ? "buildspec.yml" : local.no_source_buildspec
  }

  source_version = local.has_repository ? var.github_branch : null

  depends_on = [aws_iam_role_policy.codebuild]
}
