"""HNSW indexes rebuilt with m = 32, ef_construction = 200 (pgvector's defaults: 16, 64).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Measured on the benchmark's 100k embedding-like chunks (docs/benchmarks.md), recall@10
against exact search: 0.77 with the defaults at hnsw.ef_search 100, 0.91 at 400; with these
parameters 0.95 at ef_search 200, which the app now sets (db/engine.py). Building costs about
4x longer (190 s against 45 s for 100k chunks on 2 cores); the index is the same size. The
rebuild locks writes to rag_chunks while it runs.
"""

from collections.abc import Sequence

from alembic import op

from mtai.db.vectors import INDEXED_DIMENSIONS

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild(options: str) -> None:
    for dim in INDEXED_DIMENSIONS:
        op.execute(f"DROP INDEX IF EXISTS rag_chunks_hnsw_{dim}")
        op.execute(
            f"CREATE INDEX rag_chunks_hnsw_{dim} ON rag_chunks USING hnsw "
            f"((embedding::vector({dim})) vector_cosine_ops) {options}"
            f"WHERE embedding_dim = {dim}"
        )


def upgrade() -> None:
    _rebuild("WITH (m = 32, ef_construction = 200) ")


def downgrade() -> None:
    _rebuild("")
