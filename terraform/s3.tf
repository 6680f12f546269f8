# Two buckets:
#   storage: uploaded documents (MTAI_STORAGE_BACKEND=s3), SSE-KMS with the project key.
#   logs:    ALB access logs and the storage bucket's server access logs. SSE-S3, because
#            neither ALB access logs nor S3 server access logging can write to a bucket whose
#            default encryption is SSE-KMS.
# Names carry the account id and region: bucket names are global.

locals {
  storage_bucket_name = "${local.name}-${local.account_id}-${local.region}-data"
  logs_bucket_name    = "${local.name}-${local.account_id}-${local.region}-logs"
  alb_log_prefix      = "alb"
  s3_log_prefix       = "s3-access/"

  # Elastic Load Balancing's log-writing account in the regions that predate the
  # logdelivery.elasticloadbalancing.amazonaws.com service principal; newer regions use
  # only that principal. (The aws_elb_service_account data source fails in the newer ones.)
  elb_log_account_ids = {
    "us-east-1"      = "127311923021"
    "us-east-2"      = "033677994240"
    "us-west-1"      = "027434742980"
    "us-west-2"      = "797873946194"
    "af-south-1"     = "098369216593"
    "ap-east-1"      = "754344448648"
    "ap-southeast-3" = "589379963580"
    "ap-south-1"     = "718504428378"
    "ap-northeast-3" = "383597477331"
    "ap-northeast-2" = "600734575887"
    "ap-southeast-1" = "114774131450"
    "ap-southeast-2" = "783225319266"
    "ap-northeast-1" = "582318560864"
    "ca-central-1"   = "985666609251"
    "eu-central-1"   = "054676820928"
    "eu-west-1"      = "156460612806"
    "eu-west-2"      = "652711504416"
    "eu-south-1"     = "635631232127"
    "eu-west-3"      = "009996457667"
    "eu-north-1"     = "897822967062"
    "me-south-1"     = "076674570225"
    "sa-east-1"      = "507241528517"
    "us-gov-west-1"  = "048591011584"
    "us-gov-east-1"  = "190560391635"
  }
  elb_log_account_id = lookup(local.elb_log_account_ids, local.region, "")
}

# --- Storage bucket ------------------------------------------------------------------

resource "aws_s3_bucket" "storage" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice with its own cost; versioning and a 30-day noncurrent window protect against deletes here.
  #checkov:skip=CKV2_AWS_62:No consumer of S3 event notifications: the API enqueues ingestion itself after an upload.
  bucket = local.storage_bucket_name
  # false: destroy stops at a non-empty bucket; true only for a teardown (variables.tf).
  force_destroy = var.force_destroy_buckets

  tags = { Name = local.storage_bucket_name }
}

resource "aws_s3_bucket_ownership_controls" "storage" {
  bucket = aws_s3_bucket.storage.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "storage" {
  bucket = aws_s3_bucket.storage.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "storage" {
  bucket = aws_s3_bucket.storage.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    # S3 Bucket Keys cut KMS requests (and cost) by about 99%.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "storage" {
  bucket = aws_s3_bucket.storage.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "storage" {
  bucket = aws_s3_bucket.storage.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.s3_noncurrent_version_expiration_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.storage]
}

resource "aws_s3_bucket_logging" "storage" {
  bucket        = aws_s3_bucket.storage.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = local.s3_log_prefix

  depends_on = [aws_s3_bucket_policy.logs]
}

data "aws_iam_policy_document" "storage_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.storage.arn,
      "${aws_s3_bucket.storage.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "storage" {
  bucket = aws_s3_bucket.storage.id
  policy = data.aws_iam_policy_document.storage_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.storage]
}

# --- Log bucket ----------------------------------------------------------------------

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log bucket itself; logging it into itself would log its own log writes.
  #checkov:skip=CKV_AWS_144:Access logs are not replicated to a second region; losing them with the region is acceptable.
  #checkov:skip=CKV_AWS_145:ALB access logs and S3 server access logs only support SSE-S3 (AES256) on the destination bucket, not SSE-KMS.
  #checkov:skip=CKV2_AWS_62:Nothing consumes notifications for log objects.
  bucket = local.logs_bucket_name
  # false: destroy stops at a non-empty bucket; true only for a teardown (variables.tf).
  force_destroy = var.force_destroy_buckets

  tags = { Name = local.logs_bucket_name }
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket = aws_s3_bucket.logs.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.access_log_expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}

data "aws_iam_policy_document" "logs_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.logs.arn,
      "${aws_s3_bucket.logs.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # ALB access logs, regions launched from August 2022 on (and accepted in older ones).
  statement {
    sid       = "ALBAccessLogsServicePrincipal"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/${local.alb_log_prefix}/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  # ALB access logs, regions that predate the service principal: the region's ELB account.
  dynamic "statement" {
    for_each = local.elb_log_account_id == "" ? [] : [local.elb_log_account_id]

    content {
      sid       = "ALBAccessLogsRegionalAccount"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.logs.arn}/${local.alb_log_prefix}/AWSLogs/${local.account_id}/*"]

      principals {
        type        = "AWS"
        identifiers = ["arn:${local.partition}:iam::${statement.value}:root"]
      }
    }
  }

  # S3 server access logs of the storage bucket (ACL grants do not work with
  # BucketOwnerEnforced, so the logging service is allowed by policy).
  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/${local.s3_log_prefix}*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.storage.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.logs]
}
