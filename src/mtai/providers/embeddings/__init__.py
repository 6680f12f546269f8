"""Text embedding models that turn passages and queries into vectors for retrieval."""
