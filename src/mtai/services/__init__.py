"""Business rules, one module per feature: no HTTP, no SQL strings."""
