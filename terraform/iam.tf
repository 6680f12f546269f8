# Roles of the ECS tasks. (The CodeBuild role is in codebuild.tf, the VPC flow log and
# RDS monitoring roles next to their resources.)
#
#   execution role: used by the ECS agent to pull the image, write logs and fetch the
#                   secrets it injects. The containers never see it.
#   task role:      the containers' AWS credentials: the storage bucket and Bedrock, nothing
#                   else. Secrets arrive as environment variables, so it cannot read them.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# --- Execution role ------------------------------------------------------------------

resource "aws_iam_role" "ecs_execution" {
  name               = "${local.name}-ecs-execution"
  description        = "ECS agent for ${local.name}: pull the image, write logs, read the injected secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

locals {
  # Exactly the secrets the containers receive (the database password alone is not one;
  # admin-password goes to the API only and migration-database-url to the migrate task only,
  # but the task definitions share this role).
  injected_secret_keys = [
    "database-url", "platform-database-url", "migration-database-url", "redis-url",
    "jwt-secret", "key-pepper", "encryption-key", "metrics-token", "admin-password",
  ]
}

data "aws_iam_policy_document" "ecs_execution" {
  # GetAuthorizationToken has no resource-level permissions.
  statement {
    sid       = "ECRAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "ECRPull"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.app.arn]
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [aws_cloudwatch_log_group.app.arn, "${aws_cloudwatch_log_group.app.arn}:*"]
  }

  statement {
    sid       = "InjectedSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for key in local.injected_secret_keys : aws_secretsmanager_secret.app[key].arn]
  }

  # The secrets are encrypted with the project key; decrypt only through Secrets Manager.
  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "ecs_execution" {
  name   = "pull-log-secrets"
  role   = aws_iam_role.ecs_execution.id
  policy = data.aws_iam_policy_document.ecs_execution.json
}

# --- Task role -----------------------------------------------------------------------

resource "aws_iam_role" "ecs_task" {
  name               = "${local.name}-ecs-task"
  description        = "Containers of ${local.name}: storage bucket and Bedrock"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "ecs_task" {
  statement {
    sid       = "StorageObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.storage.arn}/*"]
  }

  statement {
    sid       = "StorageList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.storage.arn]
  }

  # The bucket's default encryption is SSE-KMS with the project key (bucket keys on).
  statement {
    sid       = "StorageEncryption"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  # Foundation models and inference profiles in the deployment region.
  statement {
    sid     = "BedrockInvoke"
    actions = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    resources = [
      "arn:${local.partition}:bedrock:${local.region}::foundation-model/*",
      "arn:${local.partition}:bedrock:${local.region}:${local.account_id}:inference-profile/*",
    ]
  }

  # A cross-region inference profile in this region routes to the same model in other
  # regions; that is allowed only when the call comes through such a profile.
  statement {
    sid       = "BedrockViaInferenceProfile"
    actions   = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    resources = ["arn:${local.partition}:bedrock:*::foundation-model/*"]

    condition {
      test     = "StringLike"
      variable = "bedrock:InferenceProfileArn"
      values   = ["arn:${local.partition}:bedrock:${local.region}:${local.account_id}:inference-profile/*"]
    }
  }
}

resource "aws_iam_role_policy" "ecs_task" {
  name   = "storage-bedrock"
  role   = aws_iam_role.ecs_task.id
  policy = data.aws_iam_policy_document.ecs_task.json
}
