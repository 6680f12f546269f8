"""Retrieval-augmented generation: turning uploaded documents into searchable passages."""
