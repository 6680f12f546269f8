"""HNSW indexes rebuilt over the embeddings as half-precision vectors (halfvec).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

Once the index fits in shared_buffers, a `perf` profile of the graph walk shows it bound by
loading the graph's elements (HnswLoadElementImpl, the buffer lookups and pins around it: 70%
of the time), each of which carries its vector. Half-precision halves the vector in every
element: on the benchmark's 100k embedding-like chunks (2 cores) the walk at ef_search 300
took 9.7 ms (p50) instead of 11.5, recall@10 against the exact float32 search stayed 0.955,
and the index is 130 MiB instead of 202, so twice as many chunks fit in the same memory. The
table keeps full-precision vectors; only the index and the walk's distances are halved (about
three significant digits, well under the differences between neighbours that matter).

The rebuild locks writes to rag_chunks while it runs (about 2.5 minutes per 100k chunks).
"""

from collections.abc import Sequence

from alembic import op

from mtai.db.vectors import INDEXED_DIMENSIONS

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild(kind: str) -> None:
    for dim in INDEXED_DIMENSIONS:
        op.execute(f"DROP INDEX IF EXISTS rag_chunks_hnsw_{dim}")
        op.execute(
            f"CREATE INDEX rag_chunks_hnsw_{dim} ON rag_chunks USING hnsw "
            f"((embedding::{kind}({dim})) {kind}_cosine_ops) "
            f"WITH (m = 32, ef_construction = 200) WHERE embedding_dim = {dim}"
        )


def upgrade() -> None:
    # The server's pgvector package may be newer than the extension this database was created
    # with (`mtai migrate` refuses a package older than 0.8.0); halfvec needs 0.7.0. Only then,
    # since updating needs the extension's owner, who may not be the one migrating.
    op.execute(
        "DO $$ BEGIN IF (SELECT installed_version IS DISTINCT FROM default_version "
        "FROM pg_available_extensions WHERE name = 'vector') "
        "THEN ALTER EXTENSION vector UPDATE; END IF; END $$"
    )
    _rebuild("halfvec")


def downgrade() -> None:
    _rebuild("vector")
