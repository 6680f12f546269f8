"""Embedding sizes that have an HNSW index (migration 0004 creates one partial index each),
and how wide the graph walk searches them.

Changing the tuple needs a migration that adds or drops the matching indexes.
"""

# MiniLM (384), Titan v2 (256/512/1024), OpenAI text-embedding-3-small and ada-002 (1536).
# HNSW indexes at most 2,000 dimensions; larger vectors are still searched, exactly.
INDEXED_DIMENSIONS = (256, 384, 512, 768, 1024, 1536)

# Candidates the HNSW graph walk keeps (pgvector's hnsw.ef_search; searches ask for at most 100
# nearest chunks), the default of MTAI_HNSW_EF_SEARCH. With the index parameters of migration
# 0006, recall@10 on the benchmark's 100k embedding-like chunks (200 queries, 2 cores) is 0.946
# at 200 (14 ms p50), 0.954 at 250 (16 ms) and 0.964 at 300 (17 ms).
HNSW_EF_SEARCH = 300
