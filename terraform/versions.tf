# Provider versions are pinned to a minor-compatible range; the lock file
# (.terraform.lock.hcl, written by the first `terraform init`) pins exact builds.
#
# No backend block here: state is local out of the box. For shared or CI state, copy
# backend.tf.example to backend.tf (see the comments in it).
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}
