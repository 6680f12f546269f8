"""Reranking per knowledge base (issue 17).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

`rerank`: searches of this knowledge base (the search API and chat's retrieval) reorder the
best fused passages with the platform's reranker (MTAI_RERANK_PROVIDER). Off by default: a
reranker is a paid, remote call on every search.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "rag_collections",
        sa.Column("rerank", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("rag_collections", "rerank")
