#!/usr/bin/env bash
# Shared helpers for scripts/*.sh. Sourced, never run:  source "$SCRIPT_DIR/lib.sh"
#
# Configuration values come from an environment variable named like the Terraform output in
# upper case (ECS_CLUSTER_NAME for ecs_cluster_name, ...), or else from
#   terraform -chdir="${TF_DIR:-terraform}" output -raw NAME
# so CI systems without the Terraform state (CodeBuild) pass them as environment variables.
# Nothing here prints a secret: values are only printed when they are resource names.

set -euo pipefail

TF_DIR="${TF_DIR:-terraform}"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# How to install each tool the scripts use.
install_hint() {
  case "$1" in
    aws) echo "install the AWS CLI v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html (or: pip install awscli)" ;;
    docker) echo "install Docker Engine with buildx: https://docs.docker.com/engine/install/ (Debian/Ubuntu: apt-get install docker.io docker-buildx)" ;;
    terraform) echo "install Terraform >= 1.5: https://developer.hashicorp.com/terraform/install, or pass the values as environment variables (see the top of this script)" ;;
    jq) echo "install jq: apt-get install jq (macOS: brew install jq)" ;;
    curl) echo "install curl: apt-get install curl (macOS: brew install curl)" ;;
    git) echo "install git: apt-get install git (macOS: xcode-select --install)" ;;
    *) echo "install $1" ;;
  esac
}

# require_tools TOOL...: fails once, naming every missing tool and how to install it.
require_tools() {
  local tool missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) && return 0
  for tool in "${missing[@]}"; do
    printf "error: '%s' is required but not installed; %s\n" "$tool" "$(install_hint "$tool")" >&2
  done
  exit 1
}

# tf_output NAME [-raw|-json]: one Terraform output, or a clear error. Always read as -json:
# with an empty state, `terraform output -raw NAME` prints a warning on stdout and exits 0.
tf_output() {
  local name="$1" mode="${2:--raw}" value errors
  require_tools terraform jq
  [[ -d "$TF_DIR" ]] || die "Terraform directory '$TF_DIR' not found (set TF_DIR, or set $(env_name_for "$name"))"
  errors="$(mktemp)"
  if ! value="$(terraform -chdir="$TF_DIR" output -no-color -json "$name" 2>"$errors")" ||
    [[ -z "$value" || "$value" == null ]]; then
    printf "error: Terraform output '%s' is missing (run 'terraform -chdir=%s apply' first, or set %s):\n" \
      "$name" "$TF_DIR" "$(env_name_for "$name")" >&2
    grep -v '^[[:space:]]*$' "$errors" | sed 's/^/  /' >&2 || true
    rm -f "$errors"
    exit 1
  fi
  rm -f "$errors"
  if [[ "$mode" == -json ]]; then
    printf '%s' "$value"
  else
    jq -r 'if type == "string" then . else tojson end' <<<"$value"
  fi
}

env_name_for() { printf '%s' "$1" | tr '[:lower:]' '[:upper:]'; }

# setting OUTPUT_NAME [DEFAULT]: $OUTPUT_NAME_IN_UPPER_CASE if set, else the Terraform output;
# with a DEFAULT, a missing Terraform or output means DEFAULT instead of an error.
setting() {
  local output="$1" env_name value
  env_name="$(env_name_for "$output")"
  value="${!env_name:-}"
  if [[ -n "$value" ]]; then
    printf '%s' "$value"
  elif (($# > 1)); then
    value="$(tf_output "$output" 2>/dev/null)" || value="$2"
    printf '%s' "$value"
  else
    tf_output "$output"
  fi
}

# True when every named output is given in the environment (so Terraform is not needed).
all_in_env() {
  local output env_name
  for output in "$@"; do
    env_name="$(env_name_for "$output")"
    [[ -n "${!env_name:-}" ]] || return 1
  done
}

# The region: $AWS_REGION, else $AWS_DEFAULT_REGION, else the Terraform output aws_region.
resolve_region() {
  if [[ -n "${AWS_REGION:-}" ]]; then
    printf '%s' "$AWS_REGION"
  elif [[ -n "${AWS_DEFAULT_REGION:-}" ]]; then
    printf '%s' "$AWS_DEFAULT_REGION"
  else
    tf_output aws_region
  fi
}

# awsr ARGS...: the AWS CLI in the deployment's region (REGION must be set by the caller).
awsr() { aws --region "$REGION" "$@"; }

is_nonneg_int() { [[ "$1" =~ ^[0-9]+$ ]] && ((10#$1 <= 1000)); }

# Comma-separated subnet ids from a JSON array (Terraform -json) or a comma/space list.
normalize_subnets() {
  local raw="$1"
  if [[ "$raw" == \[* ]]; then
    jq -j 'if type == "array" and length > 0 then join(",") else error("expected a non-empty JSON array of subnet ids") end' <<<"$raw"
  else
    printf '%s' "$raw" | tr -s ' ,' ',' | sed 's/^,//; s/,$//'
  fi
}
