"""Embedding sizes that have an HNSW index (one partial index each, over the embeddings as
half-precision vectors since migration 0008), and how wide the graph walk searches them.

Changing the tuple needs a migration that adds or drops the matching indexes.
"""

# MiniLM (384), Titan v2 (256/512/1024), OpenAI text-embedding-3-small and ada-002 (1536).
# Other sizes are still searched, exactly.
INDEXED_DIMENSIONS = (256, 384, 512, 768, 1024, 1536)

# Candidates the HNSW graph walk keeps (pgvector's hnsw.ef_search; searches ask for at most 100
# nearest chunks), the default of MTAI_HNSW_EF_SEARCH. With the index of migrations 0006 and
# 0008, recall@10 on the benchmark's 100k embedding-like chunks (100 queries, 2 cores) is 0.935
# at 200 (7.4 ms p50 of the walk), 0.955 at 300 (9.7 ms) and 0.964 at 400 (11.6 ms).
HNSW_EF_SEARCH = 300
