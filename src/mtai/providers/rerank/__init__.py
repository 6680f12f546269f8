"""Rerankers: models that score a query against passages, used after hybrid fusion."""
