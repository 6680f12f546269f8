#!/usr/bin/env bash
# Infrastructure, then application: terraform init + apply, then scripts/build-and-deploy.sh.
#
#   ./scripts/deploy.sh                  # asks before applying (terraform's own prompt)
#   ./scripts/deploy.sh -auto-approve    # CI; every argument goes to `terraform apply`
#
# Environment:
#   TF_DIR          Terraform directory, from the repository root (default: terraform)
#   TF_SKIP_INIT=1  skip `terraform init` (CI initialises the remote backend itself, with
#                   -backend-config arguments that a second init would have to repeat)
#   TF_INIT_ARGS    extra words for `terraform init`, e.g. "-backend-config=bucket=my-state"
#   and everything scripts/build-and-deploy.sh reads (its values come from the Terraform
#   outputs here, so none is needed).
#
# Secrets belong in a secret store (the Terraform config keeps them in Secrets Manager), never in
# terraform.tfvars or on this command line.

set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"
cd "$SCRIPT_DIR/.."

case "${1:-}" in
  -h | --help)
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
    exit 0
    ;;
esac

# Everything both steps need, checked before anything changes.
require_tools terraform docker aws jq curl git
[[ -d "$TF_DIR" ]] || die "Terraform directory '$TF_DIR' not found (set TF_DIR)"

if [[ "${TF_SKIP_INIT:-0}" != 1 ]]; then
  init_args=()
  # Word splitting is the point: TF_INIT_ARGS holds several arguments.
  # shellcheck disable=SC2206
  [[ -n "${TF_INIT_ARGS:-}" ]] && init_args=(${TF_INIT_ARGS})
  log "terraform init ($TF_DIR)"
  # (the ${a[@]+...} form: an empty array under `set -u` on bash 3.2, macOS's)
  terraform -chdir="$TF_DIR" init -input=false ${init_args[@]+"${init_args[@]}"}
fi

log "terraform apply ($TF_DIR)"
terraform -chdir="$TF_DIR" apply -input=false "$@"

log "building and deploying the application"
exec "$SCRIPT_DIR/build-and-deploy.sh"
