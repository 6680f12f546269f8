# The app image. The build pushes sha-<12 hex chars of the commit>; nothing requires the
# "bootstrap" tag Terraform's first task definitions name to exist (see var.image_tag).

resource "aws_ecr_repository" "app" {
  #checkov:skip=CKV_AWS_51:Tags are sha-<commit>, one per commit; rebuilding the same commit (a retried CodeBuild run) re-pushes the same tag, which IMMUTABLE would reject.
  name                 = local.name
  image_tag_mutability = "MUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.main.arn
  }
}

resource "aws_ecr_lifecycle_policy" "app" {
  repository = aws_ecr_repository.app.name

  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images (superseded layers of re-pushed tags) after 7 days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 7
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the last ${var.ecr_keep_images} sha-<commit> builds"
        selection = {
          tagStatus     = "tagged"
          tagPrefixList = ["sha-"]
          countType     = "imageCountMoreThan"
          countNumber   = var.ecr_keep_images
        }
        action = { type = "expire" }
      },
    ]
  })
}
