# ECS Fargate: one cluster, an API service behind the ALB and an ingestion worker service.
#
# Deploy model: Terraform registers the first revision of each task definition (image tag
# var.image_tag, "bootstrap" by default) and creates the services. From then on
# scripts/build-and-deploy.sh (also run by CodeBuild) registers new revisions with the
# sha-<commit> image and updates the services, and autoscaling / manage-services.sh change
# the counts; the services therefore ignore task_definition and desired_count. A later
# `terraform apply` that changes a task definition (environment, CPU, ...) registers a new
# revision with image var.image_tag: the next build-and-deploy copies it with the new
# image, so such changes go live with the next deploy.

resource "aws_cloudwatch_log_group" "app" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_ecs_cluster" "main" {
  name = local.cluster_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

locals {
  # Fargate memory range (MiB) allowed for each CPU size.
  fargate_memory = {
    "256"   = { min = 512, max = 2048 }
    "512"   = { min = 1024, max = 4096 }
    "1024"  = { min = 2048, max = 8192 }
    "2048"  = { min = 4096, max = 16384 }
    "4096"  = { min = 8192, max = 30720 }
    "8192"  = { min = 16384, max = 61440 }
    "16384" = { min = 32768, max = 122880 }
  }

  app_environment = [
    { name = "MTAI_ENV", value = "production" },
    { name = "MTAI_HOST", value = "0.0.0.0" },
    { name = "MTAI_PORT", value = tostring(local.app_port) },
    { name = "MTAI_WORKERS", value = tostring(var.mtai_workers) },
    { name = "MTAI_STORAGE_BACKEND", value = "s3" },
    { name = "MTAI_S3_BUCKET", value = aws_s3_bucket.storage.id },
    { name = "MTAI_S3_REGION", value = local.region },
    { name = "MTAI_QUEUE_BACKEND", value = "redis" },
    # Only the ALB can reach the tasks, and it connects from inside the VPC.
    { name = "MTAI_FORWARDED_ALLOW_IPS", value = var.vpc_cidr },
    { name = "MTAI_LOG_LEVEL", value = "INFO" },
    { name = "AWS_REGION", value = local.region },
    # Per process; see var.db_pool_size and check "database_connections" below.
    { name = "MTAI_DB_POOL_SIZE", value = tostring(var.db_pool_size) },
    { name = "MTAI_DB_PLATFORM_POOL_SIZE", value = tostring(var.db_platform_pool_size) },
  ]

  # Only `mtai serve` (the API) makes the first platform admin, with the password from the
  # admin-password secret, and prints nothing. An empty demo tenant slug skips the demo tenant
  # and its API key, which would otherwise be printed to the logs.
  api_bootstrap_environment = [
    { name = "MTAI_BOOTSTRAP_ADMIN_EMAIL", value = var.admin_email },
    { name = "MTAI_BOOTSTRAP_DEMO_TENANT", value = "" },
  ]

  # var.extra_environment comes last, sorted by name; its validation refuses the names above
  # and secret-looking ones.
  extra_environment = [for name in sort(keys(var.extra_environment)) : { name = name, value = var.extra_environment[name] }]

  api_environment    = concat(local.app_environment, local.api_bootstrap_environment, local.extra_environment)
  worker_environment = concat(local.app_environment, local.extra_environment)

  # DATABASE_URL is the tenant login, a member of the app role only; MTAI_PLATFORM_DATABASE_URL
  # the platform login. Neither is the RDS master (migrate_secrets below).
  app_secrets = [
    { name = "DATABASE_URL", valueFrom = aws_secretsmanager_secret.app["database-url"].arn },
    { name = "MTAI_PLATFORM_DATABASE_URL", valueFrom = aws_secretsmanager_secret.app["platform-database-url"].arn },
    { name = "REDIS_URL", valueFrom = aws_secretsmanager_secret.app["redis-url"].arn },
    { name = "MTAI_JWT_SECRET", valueFrom = aws_secretsmanager_secret.app["jwt-secret"].arn },
    { name = "MTAI_KEY_PEPPER", valueFrom = aws_secretsmanager_secret.app["key-pepper"].arn },
    { name = "MTAI_ENCRYPTION_KEY", valueFrom = aws_secretsmanager_secret.app["encryption-key"].arn },
    { name = "MTAI_METRICS_TOKEN", valueFrom = aws_secretsmanager_secret.app["metrics-token"].arn },
  ]

  # The API alone: its first start on an empty database sets the admin's password from it.
  api_bootstrap_secrets = [
    { name = "MTAI_BOOTSTRAP_ADMIN_PASSWORD", valueFrom = aws_secretsmanager_secret.app["admin-password"].arn },
  ]

  api_secrets = concat(local.app_secrets, local.api_bootstrap_secrets)

  # The migrate task: the owner's URL for the migrations, and the two logins' URLs, whose
  # users and passwords `mtai migrate --create-logins` creates or updates.
  migrate_environment = [
    { name = "MTAI_ENV", value = "production" },
    { name = "MTAI_LOG_LEVEL", value = "INFO" },
    { name = "AWS_REGION", value = local.region },
  ]
  migrate_secrets = [
    { name = "MTAI_DATABASE_MIGRATION_URL", valueFrom = aws_secretsmanager_secret.app["migration-database-url"].arn },
    { name = "DATABASE_URL", valueFrom = aws_secretsmanager_secret.app["database-url"].arn },
    { name = "MTAI_PLATFORM_DATABASE_URL", valueFrom = aws_secretsmanager_secret.app["platform-database-url"].arn },
  ]

  # Streams are <prefix>/<container>/<task id>: ecs/backend/<task-id>, ecs/worker/<task-id>.
  log_configuration = {
    logDriver = "awslogs"
    options = {
      "awslogs-group"         = aws_cloudwatch_log_group.app.name
      "awslogs-region"        = local.region
      "awslogs-stream-prefix" = "ecs"
    }
  }
}

resource "aws_ecs_task_definition" "api" {
  #checkov:skip=CKV_AWS_336:The app and its libraries write temporary files (upload spooling, tempfile) under /tmp; a read-only root filesystem would need a writable volume owned by the image's user, which Fargate bind mounts do not provide portably.
  family                   = local.api_task_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.api_cpu)
  memory                   = tostring(var.api_memory)
  execution_role_arn       = aws_iam_role.ecs_execution.arn
  task_role_arn            = aws_iam_role.ecs_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([
    {
      name             = local.api_container_name
      image            = local.image
      essential        = true
      command          = ["mtai", "serve", "--no-migrate"]
      portMappings     = [{ containerPort = local.app_port, protocol = "tcp" }]
      environment      = local.api_environment
      secrets          = local.api_secrets
      stopTimeout      = 30
      privileged       = false
      logConfiguration = local.log_configuration
    },
  ])

  lifecycle {
    precondition {
      condition     = var.api_memory >= local.fargate_memory[tostring(var.api_cpu)].min && var.api_memory <= local.fargate_memory[tostring(var.api_cpu)].max
      error_message = "api_memory is outside the range Fargate allows for api_cpu (256: 512-2048, 512: 1024-4096, 1024: 2048-8192, 2048: 4096-16384, 4096: 8192-30720, 8192: 16384-61440, 16384: 32768-122880)."
    }
  }
}

resource "aws_ecs_task_definition" "worker" {
  #checkov:skip=CKV_AWS_336:The ingestion worker writes temporary files (document parsing, tempfile) under /tmp; a read-only root filesystem would need a writable volume owned by the image's user, which Fargate bind mounts do not provide portably.
  family                   = local.worker_task_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.worker_cpu)
  memory                   = tostring(var.worker_memory)
  execution_role_arn       = aws_iam_role.ecs_execution.arn
  task_role_arn            = aws_iam_role.ecs_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([
    {
      name             = local.worker_container_name
      image            = local.image
      essential        = true
      command          = ["mtai", "worker"]
      environment      = local.worker_environment
      secrets          = local.app_secrets
      stopTimeout      = 120
      privileged       = false
      logConfiguration = local.log_configuration
    },
  ])

  lifecycle {
    precondition {
      condition     = var.worker_memory >= local.fargate_memory[tostring(var.worker_cpu)].min && var.worker_memory <= local.fargate_memory[tostring(var.worker_cpu)].max
      error_message = "worker_memory is outside the range Fargate allows for worker_cpu (256: 512-2048, 512: 1024-4096, 1024: 2048-8192, 2048: 4096-16384, 4096: 8192-30720, 8192: 16384-61440, 16384: 32768-122880)."
    }
  }
}

# `mtai migrate --create-logins`, run by scripts/build-and-deploy.sh as a one-off task before
# each rollout: the only task definition with the RDS master's credentials. No task role: it
# calls no AWS API.
resource "aws_ecs_task_definition" "migrate" {
  #checkov:skip=CKV_AWS_336:Alembic and the app's imports may write temporary files under /tmp; a read-only root filesystem would need a writable volume owned by the image's user, which Fargate bind mounts do not provide portably.
  family                   = local.migrate_task_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.api_cpu)
  memory                   = tostring(var.api_memory)
  execution_role_arn       = aws_iam_role.ecs_execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([
    {
      name             = local.migrate_container_name
      image            = local.image
      essential        = true
      command          = ["mtai", "migrate", "--create-logins"]
      environment      = local.migrate_environment
      secrets          = local.migrate_secrets
      privileged       = false
      logConfiguration = local.log_configuration
    },
  ])
}

resource "aws_ecs_service" "api" {
  name             = local.api_service_name
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.api.arn
  desired_count    = var.api_desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  # A new task imports the app and loads the embedding model before /ping answers (the image's
  # own HEALTHCHECK allows a 90 s start period); ALB health check failures before then do not
  # count against it.
  health_check_grace_period_seconds = 120

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.ecs_tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = local.api_container_name
    container_port   = local.app_port
  }

  lifecycle {
    ignore_changes = [task_definition, desired_count]
  }

  # The target group must be attached to a listener before a service can use it, and tasks
  # need the secrets' values (not only the secrets) and the execution role's permissions.
  depends_on = [
    aws_lb_listener.http,
    aws_lb_listener.https,
    aws_iam_role_policy.ecs_execution,
    aws_secretsmanager_secret_version.app,
  ]
}

resource "aws_ecs_service" "worker" {
  name             = local.worker_service_name
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.worker.arn
  desired_count    = var.worker_desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.ecs_tasks.id]
    assign_public_ip = false
  }

  lifecycle {
    ignore_changes = [task_definition, desired_count]
  }

  depends_on = [aws_iam_role_policy.ecs_execution, aws_secretsmanager_secret_version.app]
}

# --- Database connections ------------------------------------------------------------

locals {
  # max_connections of RDS PostgreSQL with the default parameter group, which derives it from
  # the instance memory (LEAST(DBInstanceClassMemory / 9531392, 5000)): approximations,
  # rounded down, for common classes. Classes not listed are not checked.
  db_max_connections = {
    "db.t3.micro"   = 100
    "db.t3.small"   = 200
    "db.t3.medium"  = 400
    "db.t3.large"   = 800
    "db.t4g.micro"  = 100
    "db.t4g.small"  = 200
    "db.t4g.medium" = 400
    "db.t4g.large"  = 800
    "db.m5.large"   = 800
    "db.m6g.large"  = 800
    "db.m6i.large"  = 800
    "db.m7g.large"  = 800
  }

  # Every API process (api_max_count tasks x mtai_workers) and every worker task at full
  # scale, each with its two pools (tenant and platform logins) full, plus as many overflow
  # connections.
  db_connections_worst_case = (var.api_max_count * var.mtai_workers + var.worker_max_count) * 2 * (var.db_pool_size + var.db_platform_pool_size)
}

# A check warns (plan and apply go on) when full scale could exhaust the database's connections.
check "database_connections" {
  assert {
    condition     = try(local.db_connections_worst_case < local.db_max_connections[var.db_instance_class], true)
    error_message = "At full scale the API and worker could open ${local.db_connections_worst_case} database connections ((api_max_count x mtai_workers + worker_max_count) x 2 x (db_pool_size + db_platform_pool_size)), but ${var.db_instance_class} allows only about ${lookup(local.db_max_connections, var.db_instance_class, 0)} (max_connections). Raise db_instance_class, or lower db_pool_size, db_platform_pool_size, mtai_workers, api_max_count or worker_max_count."
  }
}

# --- Autoscaling ---------------------------------------------------------------------

resource "aws_appautoscaling_target" "api" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.api.name}"
  min_capacity       = var.api_min_count
  max_capacity       = var.api_max_count

  lifecycle {
    precondition {
      condition     = var.api_min_count <= var.api_max_count && var.api_desired_count >= var.api_min_count && var.api_desired_count <= var.api_max_count
      error_message = "Need api_min_count <= api_desired_count <= api_max_count."
    }
  }
}

resource "aws_appautoscaling_policy" "api_cpu" {
  name               = "${local.name}-api-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  resource_id        = aws_appautoscaling_target.api.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.autoscaling_cpu_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "api_requests" {
  name               = "${local.name}-api-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  resource_id        = aws_appautoscaling_target.api.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.api_requests_per_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.main.arn_suffix}/${aws_lb_target_group.api.arn_suffix}"
    }
  }
}

resource "aws_appautoscaling_target" "worker" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.worker.name}"
  min_capacity       = var.worker_min_count
  max_capacity       = var.worker_max_count

  lifecycle {
    precondition {
      condition     = var.worker_min_count <= var.worker_max_count && var.worker_desired_count >= var.worker_min_count && var.worker_desired_count <= var.worker_max_count
      error_message = "Need worker_min_count <= worker_desired_count <= worker_max_count."
    }
  }
}

resource "aws_appautoscaling_policy" "worker_cpu" {
  name               = "${local.name}-worker-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension
  resource_id        = aws_appautoscaling_target.worker.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.autoscaling_cpu_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
