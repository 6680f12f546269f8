"""Hybrid search weights per knowledge base (issue 17).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

`vector_weight` and `keyword_weight` weigh the two candidate lists when hybrid search fuses
them for this knowledge base (services/rank_fusion.py); NULL, the platform's weights. Both or
neither are set, each 0 to 100, not both 0: the same rule as a request's `weights`, held by the
database too.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("rag_collections", sa.Column("vector_weight", sa.Float, nullable=True))
    op.add_column("rag_collections", sa.Column("keyword_weight", sa.Float, nullable=True))
    op.create_check_constraint(
        "rag_collections_weights",
        "rag_collections",
        "(vector_weight IS NULL AND keyword_weight IS NULL) OR ("
        "vector_weight BETWEEN 0 AND 100 AND keyword_weight BETWEEN 0 AND 100 "
        "AND vector_weight + keyword_weight > 0)",
    )


def downgrade() -> None:
    op.drop_constraint("rag_collections_weights", "rag_collections")
    op.drop_column("rag_collections", "keyword_weight")
    op.drop_column("rag_collections", "vector_weight")
