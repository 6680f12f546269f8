"""HTTP only: routers and request/response schemas, one module per feature."""
