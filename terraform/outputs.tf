# Read by scripts/*.sh (`terraform -chdir=terraform output -raw NAME`, and
# `-json private_subnet_ids`), by the docs and by the users' guide: keep the names.

output "aws_region" {
  description = "Region everything is deployed in."
  value       = local.region
}

output "alb_dns_name" {
  description = "DNS name of the load balancer (http://<this>/ping answers \"pong\"; point domain_name here when Route53 is not managed by Terraform)."
  value       = aws_lb.main.dns_name
}

output "alb_name" {
  description = "Name of the load balancer."
  value       = aws_lb.main.name
}

output "app_url" {
  description = "Base URL of the API."
  value       = local.app_url
}

output "target_group_arn" {
  description = "ARN of the API target group (port 8000, health check /ping)."
  value       = aws_lb_target_group.api.arn
}

output "security_group_id" {
  description = "Security group of the ECS tasks (use it for one-off tasks such as the migration)."
  value       = aws_security_group.ecs_tasks.id
}

output "private_subnet_ids" {
  description = "Private subnets of the ECS tasks (for one-off tasks: aws ecs run-task --network-configuration)."
  value       = aws_subnet.private[*].id
}

output "database_endpoint" {
  description = "Host name of the RDS instance (address only, no port): psql -h $(terraform output -raw database_endpoint). Reachable only from inside the VPC."
  value       = aws_db_instance.main.address
}

output "redis_endpoint" {
  description = "Host name of the Redis primary endpoint (TLS, port 6379). Reachable only from inside the VPC."
  value       = aws_elasticache_replication_group.redis.primary_endpoint_address
}

output "s3_bucket_name" {
  description = "Storage bucket of uploaded documents (MTAI_S3_BUCKET)."
  value       = aws_s3_bucket.storage.id
}

output "ecr_repository_url" {
  description = "ECR repository of the app image; builds push <this>:sha-<12 hex chars of the commit>."
  value       = aws_ecr_repository.app.repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.main.name
}

output "ecs_service_name" {
  description = "ECS service of the API."
  value       = aws_ecs_service.api.name
}

output "worker_service_name" {
  description = "ECS service of the ingestion worker."
  value       = aws_ecs_service.worker.name
}

output "api_task_family" {
  description = "Task definition family of the API (also used for one-off `mtai` tasks such as doctor)."
  value       = aws_ecs_task_definition.api.family
}

output "worker_task_family" {
  description = "Task definition family of the worker."
  value       = aws_ecs_task_definition.worker.family
}

output "migrate_task_family" {
  description = "Task definition family of `mtai migrate --create-logins`, the only one with the RDS master's credentials."
  value       = aws_ecs_task_definition.migrate.family
}

output "migrate_container_name" {
  description = "Name of the container in the migrate task definition."
  value       = local.migrate_container_name
}

output "container_name" {
  description = "Name of the API container in its task definition."
  value       = local.api_container_name
}

output "worker_container_name" {
  description = "Name of the worker container in its task definition."
  value       = local.worker_container_name
}

output "log_group_name" {
  description = "CloudWatch log group of the API and worker; streams are ecs/backend/<task-id> and ecs/worker/<task-id>."
  value       = aws_cloudwatch_log_group.app.name
}

output "codebuild_project_name" {
  description = "CodeBuild project that builds and deploys the image."
  value       = aws_codebuild_project.backend.name
}

output "database_url_secret_arn" {
  description = "ARN of the Secrets Manager secret holding DATABASE_URL (the tenant login, not the master)."
  value       = aws_secretsmanager_secret.app["database-url"].arn
}

output "platform_database_url_secret_arn" {
  description = "ARN of the Secrets Manager secret holding MTAI_PLATFORM_DATABASE_URL (the platform login)."
  value       = aws_secretsmanager_secret.app["platform-database-url"].arn
}

output "database_password_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the RDS master password (aws secretsmanager get-secret-value --secret-id <this>)."
  value       = aws_secretsmanager_secret.app["database-password"].arn
}

output "admin_password_secret_arn" {
  description = "ARN of the Secrets Manager secret <project_name>/admin-password: the first platform admin's password (aws secretsmanager get-secret-value --secret-id <this> --query SecretString --output text)."
  value       = aws_secretsmanager_secret.app["admin-password"].arn
}

output "metrics_token_secret_arn" {
  description = "ARN of the Secrets Manager secret <project_name>/metrics-token: the bearer token /metrics requires (Authorization: Bearer <token>)."
  value       = aws_secretsmanager_secret.app["metrics-token"].arn
}

output "alarm_topic_arn" {
  description = "SNS topic the CloudWatch alarms publish to."
  value       = aws_sns_topic.alarms.arn
}

output "certificate_validation_records" {
  description = "DNS record that validates the ACM certificate (create it at your DNS provider when route53_zone_id is empty); null without domain_name."
  value = local.https_enabled ? {
    name  = local.acm_validation.resource_record_name
    type  = local.acm_validation.resource_record_type
    value = local.acm_validation.resource_record_value
  } : null
}
