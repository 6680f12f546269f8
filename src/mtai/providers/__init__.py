"""Adapters to the outside world: LLMs, embeddings, storage. No tenant business rules."""
