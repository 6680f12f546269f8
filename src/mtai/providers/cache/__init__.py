"""The response cache's storage: Redis shared by all processes, or in-process."""
