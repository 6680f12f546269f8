"""RAG: knowledge bases, documents, chunks with vectors and full-text; citations on messages.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Vectors of every embedding model share one `vector` column without a fixed size; each model
size that an HNSW index serves gets a partial expression index (`embedding::vector(N)` where
`embedding_dim = N`), the layout pgvector recommends for mixed dimensions.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql as pg

from mtai.db.rls import enable_tenant_rls, grant_app, ident
from mtai.db.vectors import INDEXED_DIMENSIONS

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
EMPTY_JSON = sa.text("'{}'::jsonb")


def _uuid(name: str, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, pg.UUID(as_uuid=True), **kw)


def _tenant_fk() -> sa.Column[Any]:
    return _uuid("tenant_id", nullable=False)


def _stamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    ]


def upgrade() -> None:
    role = ident(context.config.attributes["app_role"])

    op.create_table(
        "rag_collections",
        _uuid("id", primary_key=True),
        _tenant_fk(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("embedding_model", sa.String(200), nullable=False),
        sa.Column("embedding_dim", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        # (tenant_id, id) is what documents point at, so a row can never cite another
        # tenant's collection even if a bug handed it a foreign id.
        sa.UniqueConstraint("tenant_id", "id", name="rag_collections_tenant_id"),
        sa.CheckConstraint("embedding_dim > 0", name="rag_collections_dim"),
    )
    op.execute(
        "CREATE UNIQUE INDEX rag_collections_name ON rag_collections (tenant_id, lower(name))"
    )
    enable_tenant_rls("rag_collections")
    grant_app("rag_collections", role)

    op.create_table(
        "rag_documents",
        _uuid("id", primary_key=True),
        _tenant_fk(),
        _uuid("collection_id", nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("filename", sa.String(500), nullable=True),
        sa.Column("content_type", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("progress", sa.Float, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("chunk_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("token_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("embedding_model", sa.String(200), nullable=True),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=EMPTY_JSON),
        sa.Column("created_by", sa.String(80), nullable=False),
        *_stamps(),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id", "collection_id"],
            ["rag_collections.tenant_id", "rag_collections.id"],
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("tenant_id", "id", name="rag_documents_tenant_id"),
        sa.UniqueConstraint("collection_id", "sha256", name="rag_documents_content"),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'ready', 'failed')", name="rag_documents_status"
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name="rag_documents_progress"),
    )
    op.create_index("rag_documents_listing", "rag_documents", ["tenant_id", "created_at"])
    # The reaper looks for unfinished documents whose lease ran out.
    op.execute(
        "CREATE INDEX rag_documents_unfinished ON rag_documents (lease_until) "
        "WHERE status IN ('queued', 'processing')"
    )
    enable_tenant_rls("rag_documents")
    grant_app("rag_documents", role)

    op.create_table(
        "rag_chunks",
        _uuid("id", primary_key=True),
        _tenant_fk(),
        _uuid("collection_id", nullable=False),
        _uuid("document_id", nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("heading", sa.Text, nullable=False, server_default=""),
        sa.Column("page", sa.Integer, nullable=True),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=EMPTY_JSON),
        sa.Column("embedding_dim", sa.Integer, nullable=False),
        sa.Column("embedding", Vector(), nullable=False),
        sa.Column(
            "tsv",
            pg.TSVECTOR,
            sa.Computed("to_tsvector('english', heading || ' ' || text)", persisted=True),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "document_id"],
            ["rag_documents.tenant_id", "rag_documents.id"],
            ondelete="CASCADE",
        ),
        # A re-run of a document replaces its chunks; this makes a duplicate impossible.
        sa.UniqueConstraint("document_id", "ordinal", name="rag_chunks_position"),
    )
    op.create_index("rag_chunks_collection", "rag_chunks", ["collection_id"])
    op.execute("CREATE INDEX rag_chunks_tsv ON rag_chunks USING gin (tsv)")
    op.execute("CREATE INDEX rag_chunks_metadata ON rag_chunks USING gin (metadata jsonb_path_ops)")
    for dim in INDEXED_DIMENSIONS:
        op.execute(
            f"CREATE INDEX rag_chunks_hnsw_{dim} ON rag_chunks USING hnsw "
            f"((embedding::vector({dim})) vector_cosine_ops) WHERE embedding_dim = {dim}"
        )
    enable_tenant_rls("rag_chunks")
    grant_app("rag_chunks", role)

    op.add_column(
        "messages",
        sa.Column("citations", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )


def downgrade() -> None:
    op.drop_column("messages", "citations")
    op.drop_table("rag_chunks")
    op.drop_table("rag_documents")
    op.drop_table("rag_collections")
