# Redis (cluster mode disabled) for rate limits, leases and the ingestion queue. TLS in
# transit (rediss://), AUTH token, encryption at rest with the project key.

resource "aws_elasticache_subnet_group" "redis" {
  name        = "${local.name}-redis"
  description = "Private subnets of ${local.name}"
  subnet_ids  = aws_subnet.private[*].id
}

resource "aws_elasticache_replication_group" "redis" {
  replication_group_id = "${local.name}-redis"
  description          = "${local.name}: limits, leases and ingestion queue"

  engine               = "redis"
  engine_version       = var.redis_engine_version
  parameter_group_name = "default.redis7"
  node_type            = var.redis_node_type
  port                 = 6379

  num_cache_clusters         = var.redis_multi_az ? 2 : 1
  automatic_failover_enabled = var.redis_multi_az
  multi_az_enabled           = var.redis_multi_az

  subnet_group_name  = aws_elasticache_subnet_group.redis.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.main.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth.result

  snapshot_retention_limit   = var.redis_snapshot_retention_days
  snapshot_window            = "02:00-03:00"
  maintenance_window         = "sun:05:30-sun:06:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false
}
