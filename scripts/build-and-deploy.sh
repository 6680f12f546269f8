#!/usr/bin/env bash
# Build the image, push it to ECR, migrate the database, roll out the API and the worker,
# and check that the load balancer answers /ping with "pong".
#
#   ./scripts/build-and-deploy.sh
#
# Steps: tools check -> image tag sha-<12 hex of HEAD> (a dirty tree is refused) -> docker build
# (linux/amd64) and push (skipped when ECR already has the tag) -> new revisions of the API
# worker and migrate task definitions with that image -> `mtai migrate --create-logins` as a
# one-off Fargate task of the migrate task definition (the only one with the RDS master's
# credentials) in the private subnets (the deploy stops here if it fails; the old version keeps serving) ->
# both services updated -> `aws ecs wait services-stable` -> the new revision is the one
# running (not a circuit-breaker rollback) -> GET /ping through the ALB, with retries.
#
# Each value below comes from the environment if set, else from the Terraform output of the
# same name in lower case (terraform -chdir="$TF_DIR" output -raw NAME). CodeBuild, which has
# no Terraform state, sets them all as environment variables; Terraform is then not needed.
#   AWS_REGION            region (else AWS_DEFAULT_REGION, else output aws_region)
#   ECR_REPOSITORY_URL    <account>.dkr.ecr.<region>.amazonaws.com/<repository>
#   ECS_CLUSTER_NAME      the ECS cluster
#   ECS_SERVICE_NAME      the API service
#   WORKER_SERVICE_NAME   the worker service
#   API_TASK_FAMILY       task definition family of the API
#   WORKER_TASK_FAMILY    task definition family of the worker
#   MIGRATE_TASK_FAMILY   task definition family of the migration
#   CONTAINER_NAME        the API's container in its task definition (default "backend")
#   WORKER_CONTAINER_NAME the worker's container (default "worker")
#   MIGRATE_CONTAINER_NAME the migration's container (default "migrate")
#   PRIVATE_SUBNET_IDS    subnets of the migration task: JSON array or comma-separated
#   SECURITY_GROUP_ID     security group of the tasks
#   ALB_DNS_NAME          load balancer DNS name, for the /ping check (else output app_url,
#                         else alb_dns_name; with none of them the check is skipped)
#   LOG_GROUP_NAME        CloudWatch log group (used when the task definition names none)
# Behaviour:
#   TF_DIR                Terraform directory, from the repository root (default: terraform)
#   IMAGE_TAG             use this tag instead of sha-<commit>
#   GIT_COMMIT            commit to tag when the checkout has no .git (CodeBuild:
#                         CODEBUILD_RESOLVED_SOURCE_VERSION)
#   ALLOW_DIRTY=1         build from uncommitted changes; the tag gets -dirty-<UTC time>
#   FORCE_BUILD=1         build and push even if ECR already holds the tag
#   INSTALL_LOCAL_MODEL   "true" builds the image with the offline local model (slow)
#   DOCKER_PLATFORM       default linux/amd64 (Fargate's X86_64)
#   APP_URL               base URL for the /ping check, e.g. https://ai.example.com when the
#                         ALB redirects HTTP to HTTPS (default http://$ALB_DNS_NAME)
#   PING_ATTEMPTS, PING_DELAY       /ping retries (default 30 x 10 s)
#   MIGRATION_TIMEOUT     seconds to wait for the migration task (default 1800)
#   STABLE_ATTEMPTS       rounds of `aws ecs wait services-stable` (10 min each; default 3)

set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"
cd "$SCRIPT_DIR/.."

# Files that make up the image: a change to any of them, uncommitted, makes the tree dirty.
IMAGE_INPUTS=(Dockerfile .dockerignore pyproject.toml README.md src frontend)
# Values without a default: when all are in the environment, Terraform is not needed.
REQUIRED=(ecr_repository_url ecs_cluster_name ecs_service_name worker_service_name
  api_task_family worker_task_family migrate_task_family private_subnet_ids security_group_id)

check_tools() {
  local tools=(docker aws jq curl)
  [[ -n "${IMAGE_TAG:-}${GIT_COMMIT:-}" ]] || tools+=(git)
  if ! all_in_env "${REQUIRED[@]}" || [[ -z "${AWS_REGION:-}${AWS_DEFAULT_REGION:-}" ]]; then
    tools+=(terraform)
  fi
  require_tools "${tools[@]}"
}

image_tag() {
  local commit
  if [[ -n "${IMAGE_TAG:-}" ]]; then
    [[ "$IMAGE_TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "IMAGE_TAG '$IMAGE_TAG' is not a valid image tag"
    printf '%s' "$IMAGE_TAG"
    return
  fi
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    commit="$(git rev-parse --short=12 HEAD)"
    if [[ -n "$(git status --porcelain --untracked-files=normal -- "${IMAGE_INPUTS[@]}")" ]]; then
      if [[ "${ALLOW_DIRTY:-0}" != 1 ]]; then
        git status --short -- "${IMAGE_INPUTS[@]}" >&2
        die "uncommitted changes in the image's sources (above): commit them, or set ALLOW_DIRTY=1 to deploy them under a -dirty tag"
      fi
      warn "deploying uncommitted changes (ALLOW_DIRTY=1)"
      printf 'sha-%s-dirty-%s' "$commit" "$(date -u +%Y%m%d%H%M%S)"
      return
    fi
    printf 'sha-%s' "$commit"
  elif [[ -n "${GIT_COMMIT:-}" ]]; then
    [[ "$GIT_COMMIT" =~ ^[0-9a-f]{12,40}$ ]] || die "GIT_COMMIT '$GIT_COMMIT' is not a commit id (12 to 40 hex digits)"
    printf 'sha-%s' "${GIT_COMMIT:0:12}"
  else
    die "not a git checkout: set GIT_COMMIT (the commit being deployed) or IMAGE_TAG"
  fi
}

build_and_push() {
  local image="$1" registry="${ECR_URL%%/*}" repository="${ECR_URL#*/}" commit
  if [[ "${FORCE_BUILD:-0}" != 1 ]] &&
    awsr ecr describe-images --repository-name "$repository" --image-ids "imageTag=$TAG" >/dev/null 2>&1; then
    log "ECR already has $image: not building it again (FORCE_BUILD=1 to rebuild)"
    return
  fi
  commit="$(git rev-parse HEAD 2>/dev/null || printf '%s' "${GIT_COMMIT:-unknown}")"
  log "building $image for ${DOCKER_PLATFORM:-linux/amd64}"
  docker build --pull \
    --platform "${DOCKER_PLATFORM:-linux/amd64}" \
    --build-arg "GIT_SHA=$commit" \
    --build-arg "INSTALL_LOCAL_MODEL=${INSTALL_LOCAL_MODEL:-false}" \
    --tag "$image" .
  log "logging in to $registry"
  awsr ecr get-login-password | docker login --username AWS --password-stdin "$registry" >/dev/null ||
    die "docker login to $registry failed"
  log "pushing $image"
  docker push "$image"
}

# register_revision FAMILY CONTAINER IMAGE: prints the ARN of a new revision of FAMILY's latest
# revision, with CONTAINER's image replaced. The definition is never printed (it names secrets'
# ARNs and environment values).
register_revision() {
  local family="$1" container="$2" image="$3" current input
  current="$(awsr ecs describe-task-definition --task-definition "$family" --include TAGS --output json)" ||
    die "cannot read task definition family '$family'"
  input="$(jq --arg name "$container" --arg image "$image" '
    .tags as $tags
    | .taskDefinition
    | if any(.containerDefinitions[]; .name == $name) then .
      else error("task definition \(.family) has no container named \($name)") end
    | .containerDefinitions |= map(if .name == $name then .image = $image else . end)
    | del(.taskDefinitionArn, .revision, .status, .requiresAttributes, .compatibilities,
          .registeredAt, .registeredBy, .deregisteredAt)
    | if ($tags | length) > 0 then .tags = $tags else . end' <<<"$current")" ||
    die "cannot prepare a new revision of '$family' with container '$container' (the names come from CONTAINER_NAME / WORKER_CONTAINER_NAME / MIGRATE_CONTAINER_NAME when set in the environment, else from Terraform)"
  awsr ecs register-task-definition --cli-input-json "$input" \
    --query 'taskDefinition.taskDefinitionArn' --output text
}

# migrate TASK_DEFINITION_ARN: runs `mtai migrate --create-logins` once and fails loudly if it
# fails.
migrate() {
  local taskdef="$1" subnets network overrides result task_arn task_id deadline status=""
  local previous="" task exit_code reason group prefix stream
  subnets="$(normalize_subnets "$SUBNETS")"
  [[ -n "$subnets" ]] || die "no private subnets (PRIVATE_SUBNET_IDS / output private_subnet_ids)"
  network="awsvpcConfiguration={subnets=[$subnets],securityGroups=[$SECURITY_GROUP],assignPublicIp=DISABLED}"
  overrides="$(jq -cn --arg name "$MIGRATE_CONTAINER" '{containerOverrides: [{name: $name, command: ["mtai", "migrate", "--create-logins"]}]}')"
  log "running migrations: one-off task of $taskdef"
  result="$(awsr ecs run-task --cluster "$CLUSTER" --task-definition "$taskdef" \
    --launch-type FARGATE --count 1 --started-by build-and-deploy \
    --network-configuration "$network" --overrides "$overrides" --output json)" ||
    die "could not start the migration task"
  task_arn="$(jq -r '.tasks[0].taskArn // empty' <<<"$result")"
  if [[ -z "$task_arn" ]]; then
    jq -r '.failures[]? | "  \(.arn // "-"): \(.reason) \(.detail // "")"' <<<"$result" >&2
    die "the migration task did not start (reasons above)"
  fi
  task_id="${task_arn##*/}"
  deadline=$((SECONDS + ${MIGRATION_TIMEOUT:-1800}))
  while [[ "$status" != STOPPED ]]; do
    ((SECONDS < deadline)) || die "migration task $task_id still $status after ${MIGRATION_TIMEOUT:-1800} s (it keeps running; see aws ecs describe-tasks --cluster $CLUSTER --tasks $task_arn)"
    sleep 6
    task="$(awsr ecs describe-tasks --cluster "$CLUSTER" --tasks "$task_arn" --output json)"
    status="$(jq -r '.tasks[0].lastStatus // "UNKNOWN"' <<<"$task")"
    [[ "$status" == "$previous" ]] || log "migration task $task_id: $status"
    previous="$status"
  done
  exit_code="$(jq -r --arg name "$MIGRATE_CONTAINER" '.tasks[0].containers[] | select(.name == $name) | .exitCode // empty' <<<"$task")"
  reason="$(jq -r --arg name "$MIGRATE_CONTAINER" '[.tasks[0].stoppedReason, (.tasks[0].containers[] | select(.name == $name) | .reason)] | map(select(. != null)) | join("; ")' <<<"$task")"
  if [[ "$exit_code" == 0 ]]; then
    log "migrations applied"
    return
  fi
  # Where its output went: the awslogs options of the container, else the contract's names.
  group="$(awsr ecs describe-task-definition --task-definition "$taskdef" --output json |
    jq -r --arg name "$MIGRATE_CONTAINER" '.taskDefinition.containerDefinitions[] | select(.name == $name) | .logConfiguration.options["awslogs-group"] // empty')" || true
  prefix="$(awsr ecs describe-task-definition --task-definition "$taskdef" --output json |
    jq -r --arg name "$MIGRATE_CONTAINER" '.taskDefinition.containerDefinitions[] | select(.name == $name) | .logConfiguration.options["awslogs-stream-prefix"] // empty')" || true
  group="${group:-${LOG_GROUP_NAME:-}}"
  stream="${prefix:-ecs}/$MIGRATE_CONTAINER/$task_id"
  if [[ -n "$group" ]]; then
    log "last lines of $group / $stream:"
    awsr logs get-log-events --log-group-name "$group" --log-stream-name "$stream" \
      --limit 40 --query 'events[].message' --output text 2>/dev/null | tr '\t' '\n' >&2 || true
  fi
  die "migration task $task_id failed: exit code ${exit_code:-none}${reason:+ ($reason)}; log stream: ${group:-<log group>} $stream (aws logs tail ${group:-<log group>} --log-stream-names $stream --region $REGION). The services were not updated."
}

# check_rollout SERVICE TASKDEF_ARN: the service's primary deployment runs TASKDEF_ARN.
check_rollout() {
  local service="$1" taskdef="$2" description primary state
  description="$(awsr ecs describe-services --cluster "$CLUSTER" --services "$service" --output json)"
  primary="$(jq -r '.services[0].deployments[] | select(.status == "PRIMARY") | .taskDefinition' <<<"$description")"
  state="$(jq -r '.services[0].deployments[] | select(.status == "PRIMARY") | .rolloutState // "UNKNOWN"' <<<"$description")"
  if [[ "$primary" != "$taskdef" || "$state" == FAILED ]]; then
    jq -r '.services[0].events[:8][] | "  \(.createdAt) \(.message)"' <<<"$description" >&2
    die "service $service runs $primary (rollout $state), not $taskdef: the deployment failed or was rolled back (events above)"
  fi
}

wait_stable() {
  local attempt
  for ((attempt = 1; attempt <= ${STABLE_ATTEMPTS:-3}; attempt++)); do
    log "waiting for $API_SERVICE and $WORKER_SERVICE to become stable (round $attempt)"
    if awsr ecs wait services-stable --cluster "$CLUSTER" --services "$API_SERVICE" "$WORKER_SERVICE"; then
      return
    fi
  done
  for service in "$API_SERVICE" "$WORKER_SERVICE"; do
    awsr ecs describe-services --cluster "$CLUSTER" --services "$service" --output json |
      jq -r '.services[0] | "\(.serviceName): desired \(.desiredCount), running \(.runningCount), pending \(.pendingCount)", (.events[:5][] | "  \(.createdAt) \(.message)")' >&2 || true
  done
  die "services did not become stable (state above; scripts/manage-services.sh status / logs)"
}

# The base URL of the /ping check: APP_URL, http://$ALB_DNS_NAME, or the Terraform outputs
# app_url (https://<domain> when one is configured) or alb_dns_name; empty when none is known.
ping_base() {
  local url
  if [[ -n "${APP_URL:-}" ]]; then
    printf '%s' "${APP_URL%/}"
  elif [[ -n "${ALB_DNS_NAME:-}" ]]; then
    printf 'http://%s' "$ALB_DNS_NAME"
  elif url="$(setting app_url "")" && [[ -n "$url" ]]; then
    printf '%s' "${url%/}"
  elif url="$(setting alb_dns_name "")" && [[ -n "$url" ]]; then
    printf 'http://%s' "$url"
  fi
}

ping_app() {
  local url="$1" attempt body=""
  if [[ "$url" == /ping ]]; then
    warn "no APP_URL, ALB_DNS_NAME or Terraform output app_url/alb_dns_name: the /ping check is skipped (the services are stable and run the new revision)"
    return
  fi
  for ((attempt = 1; attempt <= ${PING_ATTEMPTS:-30}; attempt++)); do
    body="$(curl -sS --max-time 10 "$url" 2>/dev/null || true)"
    if [[ "$body" == '"pong"' ]]; then
      log "$url answered \"pong\""
      return
    fi
    log "waiting for $url ($attempt/${PING_ATTEMPTS:-30})"
    sleep "${PING_DELAY:-10}"
  done
  die "$url did not answer \"pong\" (last answer: ${body:0:200}). If the ALB redirects HTTP to HTTPS, set APP_URL=https://<your domain>"
}

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

main() {
  case "${1:-}" in
    -h | --help) usage && return 0 ;;
    "") ;;
    *) usage >&2 && die "unexpected argument '$1' (configuration is by environment variables, listed above)" ;;
  esac
  check_tools

  REGION="$(resolve_region)"
  awsr sts get-caller-identity --query Account --output text >/dev/null ||
    die "no usable AWS credentials for region $REGION (aws configure, AWS_PROFILE, or a role)"
  ECR_URL="$(setting ecr_repository_url)"
  CLUSTER="$(setting ecs_cluster_name)"
  API_SERVICE="$(setting ecs_service_name)"
  WORKER_SERVICE="$(setting worker_service_name)"
  API_FAMILY="$(setting api_task_family)"
  WORKER_FAMILY="$(setting worker_task_family)"
  API_CONTAINER="$(setting container_name backend)"
  WORKER_CONTAINER="$(setting worker_container_name worker)"
  MIGRATE_FAMILY="$(setting migrate_task_family)"
  MIGRATE_CONTAINER="$(setting migrate_container_name migrate)"
  SECURITY_GROUP="$(setting security_group_id)"
  if [[ -n "${PRIVATE_SUBNET_IDS:-}" ]]; then
    SUBNETS="$PRIVATE_SUBNET_IDS"
  else
    SUBNETS="$(tf_output private_subnet_ids -json)"
  fi
  PING_URL="$(ping_base)/ping"
  TAG="$(image_tag)"
  local image="$ECR_URL:$TAG" api_taskdef worker_taskdef migrate_taskdef

  log "deploying $image to cluster $CLUSTER ($REGION): services $API_SERVICE, $WORKER_SERVICE (containers $API_CONTAINER, $WORKER_CONTAINER)"
  build_and_push "$image"

  api_taskdef="$(register_revision "$API_FAMILY" "$API_CONTAINER" "$image")"
  log "registered $api_taskdef"
  worker_taskdef="$(register_revision "$WORKER_FAMILY" "$WORKER_CONTAINER" "$image")"
  log "registered $worker_taskdef"
  migrate_taskdef="$(register_revision "$MIGRATE_FAMILY" "$MIGRATE_CONTAINER" "$image")"
  log "registered $migrate_taskdef"

  migrate "$migrate_taskdef"

  awsr ecs update-service --cluster "$CLUSTER" --service "$API_SERVICE" \
    --task-definition "$api_taskdef" --query 'service.serviceName' --output text >/dev/null
  awsr ecs update-service --cluster "$CLUSTER" --service "$WORKER_SERVICE" \
    --task-definition "$worker_taskdef" --query 'service.serviceName' --output text >/dev/null
  log "services updated"

  wait_stable
  check_rollout "$API_SERVICE" "$api_taskdef"
  check_rollout "$WORKER_SERVICE" "$worker_taskdef"
  ping_app "$PING_URL"
  log "deployed $image"
}

main "$@"
