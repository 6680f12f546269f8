"""Embedding sizes that have an HNSW index (migration 0004 creates one partial index each).

Changing this tuple needs a migration that adds or drops the matching indexes.
"""

# MiniLM (384), Titan v2 (256/512/1024), OpenAI text-embedding-3-small and ada-002 (1536).
# HNSW indexes at most 2,000 dimensions; larger vectors are still searched, exactly.
INDEXED_DIMENSIONS = (256, 384, 512, 768, 1024, 1536)
