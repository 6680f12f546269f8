# One customer-managed key for the project's data at rest: Secrets Manager secrets, the
# storage bucket, RDS (storage and Performance Insights), ElastiCache, ECR, CloudWatch log
# groups, the alarm SNS topic and CodeBuild. IAM policies in this account decide who uses
# it (first statement); services that act without an IAM principal of ours get their own
# statements: CloudWatch Logs (log group encryption) and CloudWatch alarms (publishing to
# the encrypted SNS topic). RDS, ElastiCache, ECR and Secrets Manager use grants created
# with the caller's IAM permissions, which the first statement allows.

resource "aws_kms_key" "main" {
  description             = "${local.name}: data at rest (secrets, S3, RDS, Redis, ECR, logs, SNS)"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountIAMPolicies"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryption"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action = [
          "kms:Encrypt*",
          "kms:Decrypt*",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:Describe*",
        ]
        Resource = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"
          }
        }
      },
      {
        Sid       = "CloudWatchAlarmsToEncryptedSNS"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
      },
    ]
  })
}

resource "aws_kms_alias" "main" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.main.key_id
}
