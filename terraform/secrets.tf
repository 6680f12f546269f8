# Every credential is generated here and stored in Secrets Manager; nothing secret is an
# input or sits in a tracked file. ECS injects the secrets into the containers (ecs.tf).
# The values are in the Terraform state too, so the state must be kept private and
# encrypted (backend.tf.example: S3 with encryption).
#
# Rotation: `terraform apply -replace=random_password.<name>` writes a new value; the
# running tasks keep the old one until they are replaced (scripts/build-and-deploy.sh or
# `aws ecs update-service --force-new-deployment`). Rotating jwt_secret logs everybody out;
# rotating key_pepper or encryption_key invalidates API keys and stored provider
# credentials: do not rotate those two casually. admin_password is read only by the very
# first start on an empty database (MTAI_BOOTSTRAP_ADMIN_PASSWORD): replacing it later does
# not change the admin's password. Rotating metrics_token needs the scraper's copy updated.

# Alphanumeric only: safe inside postgresql:// URLs and accepted by RDS (which refuses
# / @ " and spaces). The RDS master's: migrations only (the migrate task definition).
resource "random_password" "db" {
  length  = 40
  special = false
}

# The app's two logins (docs/deployment.md, "Database logins"): `mtai migrate --create-logins`
# creates them, or sets these passwords, from the URLs below. The tenant login is a member of
# the app role only, the platform login of the platform role only. Rotate with
# `terraform apply -replace=random_password.db_tenant_login` (or db_platform_login), then a
# deploy: its migration sets the new password before the new tasks start, and the old tasks
# keep their open connections until they are replaced.
resource "random_password" "db_tenant_login" {
  length  = 40
  special = false
}

resource "random_password" "db_platform_login" {
  length  = 40
  special = false
}

# ElastiCache AUTH token: 16-128 printable characters without @ / " (alphanumeric here,
# which also keeps the rediss:// URL valid without escaping).
resource "random_password" "redis_auth" {
  length  = 64
  special = false
}

# App secrets: URL-safe alphabet (letters, digits, - and _), at least 32 characters
# (the app refuses shorter ones in production).
resource "random_password" "jwt_secret" {
  length           = 64
  special          = true
  override_special = "-_"
}

resource "random_password" "key_pepper" {
  length           = 64
  special          = true
  override_special = "-_"
}

resource "random_password" "encryption_key" {
  length           = 48
  special          = true
  override_special = "-_"
}

# The first platform admin's password (MTAI_BOOTSTRAP_ADMIN_PASSWORD): `mtai serve` uses it on
# its first start and never prints it. Read it with
# `aws secretsmanager get-secret-value --secret-id <project_name>/admin-password`.
resource "random_password" "admin_password" {
  length           = 32
  special          = true
  override_special = "-_"
}

# Bearer token that /metrics requires (MTAI_METRICS_TOKEN): the ALB forwards every path, so
# without it the metrics would be public.
resource "random_password" "metrics_token" {
  length           = 48
  special          = true
  override_special = "-_"
}

locals {
  db_tenant_login   = "mtai_tenant_login"
  db_platform_login = "mtai_platform_login"
  database_location = "${aws_db_instance.main.address}:5432/${var.db_name}"
  # The master: the migrate task alone receives it.
  migration_database_url = "postgresql://${var.db_username}:${random_password.db.result}@${local.database_location}"
  # The API and the worker: a login that can reach the app role only, and the platform login.
  database_url          = "postgresql://${local.db_tenant_login}:${random_password.db_tenant_login.result}@${local.database_location}"
  platform_database_url = "postgresql://${local.db_platform_login}:${random_password.db_platform_login.result}@${local.database_location}"
  redis_url             = "rediss://:${random_password.redis_auth.result}@${aws_elasticache_replication_group.redis.primary_endpoint_address}:6379/0"

  # for_each runs over names and descriptions only: Terraform refuses sensitive values
  # (the generated passwords) in a for_each expression.
  secret_descriptions = {
    "database-password"      = "Master password of the RDS PostgreSQL instance"
    "database-url"           = "DATABASE_URL of the API and worker: the tenant login, a member of the app role only (postgresql://user:password@host:5432/db)"
    "platform-database-url"  = "MTAI_PLATFORM_DATABASE_URL of the API and worker: the platform login, a member of the platform role only"
    "migration-database-url" = "MTAI_DATABASE_MIGRATION_URL of the migrate task only: the RDS master, which owns the schema"
    "redis-url"              = "REDIS_URL of the API and worker (rediss:// with the AUTH token)"
    "jwt-secret"             = "MTAI_JWT_SECRET: HMAC key of access tokens"
    "key-pepper"             = "MTAI_KEY_PEPPER: secret mixed into API key hashes"
    "encryption-key"         = "MTAI_ENCRYPTION_KEY: key that encrypts tenants' provider credentials at rest"
    "admin-password"         = "MTAI_BOOTSTRAP_ADMIN_PASSWORD: password of the first platform admin (var.admin_email), set on the first start"
    "metrics-token"          = "MTAI_METRICS_TOKEN: bearer token that /metrics requires"
  }

  secret_values = {
    "database-password"      = random_password.db.result
    "database-url"           = local.database_url
    "platform-database-url"  = local.platform_database_url
    "migration-database-url" = local.migration_database_url
    "redis-url"              = local.redis_url
    "jwt-secret"             = random_password.jwt_secret.result
    "key-pepper"             = random_password.key_pepper.result
    "encryption-key"         = random_password.encryption_key.result
    "admin-password"         = random_password.admin_password.result
    "metrics-token"          = random_password.metrics_token.result
  }
}

resource "aws_secretsmanager_secret" "app" {
  #checkov:skip=CKV2_AWS_57:Values are generated by Terraform and consumed as ECS secrets at task start; rotation is `terraform apply -replace=random_password.<name>` followed by a redeploy (see the header of this file), not a rotation Lambda.
  for_each = local.secret_descriptions

  name                    = "${local.name}/${each.key}"
  description             = each.value
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "app" {
  for_each = local.secret_descriptions

  secret_id     = aws_secretsmanager_secret.app[each.key].id
  secret_string = local.secret_values[each.key]
}
