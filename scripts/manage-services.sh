#!/usr/bin/env bash
# Operate the ECS services: the API (default) and the ingestion worker.
#
# Usage: scripts/manage-services.sh COMMAND [ARGS] [api|worker|all] [options]
#   status [api|worker|all]          desired/running/pending, deployments, last events (default all)
#   scale N [api|worker]             set the desired count to N (0..1000; default service: api)
#   stop [api|worker|all] [--yes]    scale to 0, after a confirmation unless --yes
#   start [N] [api|worker|all]       scale to N (default 1)
#   logs [api|worker] [--follow] [--since 1h]
#                                    CloudWatch logs (aws logs tail) of one service, or both
# Options: -y/--yes (no confirmation), -f/--follow, --since DURATION (default 30m), -h/--help
# With auto scaling on a service, its policy moves the desired count back within its min/max.
#
# Values (as for build-and-deploy.sh: the environment first, else the Terraform output of the
# same name in lower case, from TF_DIR, default terraform): AWS_REGION, ECS_CLUSTER_NAME,
# ECS_SERVICE_NAME, WORKER_SERVICE_NAME, LOG_GROUP_NAME, CONTAINER_NAME (default backend),
# WORKER_CONTAINER_NAME (default worker).
# Exit codes: 0 done, 1 failure (AWS, a missing tool or value), 2 bad arguments.

set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"
cd "$SCRIPT_DIR/.."

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

bad_usage() {
  printf 'error: %s\n\n' "$1" >&2
  usage >&2
  exit 2
}

# ---- arguments (all checked before any tool or AWS call) --------------------------------------
COMMAND=""
COUNT=""
TARGET=""
YES=0
FOLLOW=0
SINCE="30m"
positional=()
while (($# > 0)); do
  case "$1" in
    -h | --help) usage && exit 0 ;;
    -y | --yes) YES=1 ;;
    -f | --follow) FOLLOW=1 ;;
    --since)
      (($# > 1)) || bad_usage "--since needs a value, e.g. --since 1h"
      SINCE="$2"
      shift
      ;;
    --since=*) SINCE="${1#--since=}" ;;
    -*) bad_usage "unknown option '$1'" ;;
    *) positional+=("$1") ;;
  esac
  shift
done
((${#positional[@]} > 0)) || bad_usage "no command given"
COMMAND="${positional[0]}"
args=("${positional[@]:1}")

take_target() { # the remaining argument, if any, must name a service
  local default="$1" allowed="$2"
  if ((${#args[@]} == 0)); then
    TARGET="$default"
  elif ((${#args[@]} == 1)) && [[ " $allowed " == *" ${args[0]} "* ]]; then
    TARGET="${args[0]}"
  else
    bad_usage "$COMMAND: expected [${allowed// /|}], got '${args[*]}'"
  fi
}

case "$COMMAND" in
  status) take_target all "api worker all" ;;
  scale)
    ((${#args[@]} > 0)) || bad_usage "scale needs a count: scale N [api|worker]"
    is_nonneg_int "${args[0]}" || bad_usage "scale: '${args[0]}' is not a whole number from 0 to 1000"
    COUNT="${args[0]}"
    args=("${args[@]:1}")
    take_target api "api worker"
    ;;
  stop) take_target api "api worker all" ;;
  start)
    COUNT=1
    if ((${#args[@]} > 0)) && [[ "${args[0]}" =~ ^[0-9]+$ ]]; then
      is_nonneg_int "${args[0]}" || bad_usage "start: '${args[0]}' is not a whole number from 0 to 1000"
      COUNT="${args[0]}"
      args=("${args[@]:1}")
    fi
    take_target api "api worker all"
    ;;
  logs) take_target all "api worker all" ;;
  *) bad_usage "unknown command '$COMMAND'" ;;
esac

# ---- configuration ---------------------------------------------------------------------------
require_tools aws jq
REGION="$(resolve_region)"
CLUSTER="$(setting ecs_cluster_name)"

service_name() { # api|worker -> the ECS service name
  case "$1" in
    api) setting ecs_service_name ;;
    worker) setting worker_service_name ;;
  esac
}

targets() { # the services TARGET names, one per line
  case "$TARGET" in
    all) printf '%s\n' api worker ;;
    *) printf '%s\n' "$TARGET" ;;
  esac
}

# ---- commands --------------------------------------------------------------------------------
status() {
  local which service
  for which in $(targets); do
    service="$(service_name "$which")"
    awsr ecs describe-services --cluster "$CLUSTER" --services "$service" --output json |
      jq -r --arg which "$which" '
        (.failures[]? | "\($which): \(.arn) \(.reason)"),
        (.services[]? |
          "\($which): \(.serviceName) [\(.status)]  desired \(.desiredCount)  running \(.runningCount)  pending \(.pendingCount)",
          "  task definition: \(.taskDefinition | split("/") | last)",
          "  deployments:",
          (.deployments[] | "    \(.status) \(.taskDefinition | split("/") | last)  \(.rolloutState // "-")  desired \(.desiredCount) running \(.runningCount) pending \(.pendingCount) failed \(.failedTasks // 0)  updated \(.updatedAt)"),
          "  last events:",
          (.events[:5][] | "    \(.createdAt)  \(.message)"))'
  done
}

scale_to() {
  local count="$1" which service
  for which in $(targets); do
    service="$(service_name "$which")"
    awsr ecs update-service --cluster "$CLUSTER" --service "$service" --desired-count "$count" \
      --query 'service.[serviceName, desiredCount]' --output text >/dev/null
    log "$which ($service): desired count set to $count"
  done
  log "follow the change with: $0 status $TARGET"
}

stop() {
  local answer which names=()
  if ((YES == 0)); then
    for which in $(targets); do names+=("$(service_name "$which")"); done
    [[ -t 0 ]] || die "stop needs a confirmation: run it in a terminal, or pass --yes"
    read -r -p "Scale ${names[*]} in cluster $CLUSTER ($REGION) to 0 tasks? Type 'yes': " answer
    [[ "$answer" == yes ]] || die "not stopped"
  fi
  scale_to 0
}

logs() {
  local group prefix="" tail_args=()
  [[ "$(aws --version 2>&1)" == aws-cli/1.* ]] &&
    die "'aws logs tail' needs the AWS CLI v2 (this is $(aws --version 2>&1 | cut -d' ' -f1)); $(install_hint aws)"
  group="$(setting log_group_name)"
  case "$TARGET" in
    api) prefix="ecs/$(setting container_name backend)/" ;;
    worker) prefix="ecs/$(setting worker_container_name worker)/" ;;
  esac
  [[ -n "$prefix" ]] && tail_args+=(--log-stream-name-prefix "$prefix")
  ((FOLLOW == 1)) && tail_args+=(--follow)
  awsr logs tail "$group" --since "$SINCE" --format short ${tail_args[@]+"${tail_args[@]}"}
}

case "$COMMAND" in
  status) status ;;
  scale | start) scale_to "$COUNT" ;;
  stop) stop ;;
  logs) logs ;;
esac
