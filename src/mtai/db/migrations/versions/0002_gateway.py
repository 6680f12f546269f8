"""Gateway: model catalog, tenant provider credentials, conversations, usage ledger, prompt logs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

from mtai.db.rls import enable_tenant_rls, grant_app, ident

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")


def _tenant_fk() -> sa.Column[Any]:
    return sa.Column(
        "tenant_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("tenants.id", ondelete="CASCADE"),
        nullable=False,
    )


def _stamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    ]


def upgrade() -> None:
    role = ident(context.config.attributes["app_role"])

    op.create_table(
        "models",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("upstream_model", sa.String(200), nullable=False),
        sa.Column("base_url", sa.Text, nullable=True),
        sa.Column("region", sa.String(32), nullable=True),
        sa.Column("api_key_encrypted", sa.LargeBinary, nullable=True),
        sa.Column("context_window", sa.Integer, nullable=False),
        sa.Column("max_output_tokens", sa.Integer, nullable=False),
        sa.Column("input_price_per_1m", sa.Numeric(14, 6), nullable=False),
        sa.Column("output_price_per_1m", sa.Numeric(14, 6), nullable=False),
        sa.Column("timeout_seconds", sa.Float, nullable=False),
        sa.Column("max_retries", sa.Integer, nullable=False),
        sa.Column("fallbacks", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        *_stamps(),
        sa.CheckConstraint(
            "provider IN ('openai', 'anthropic', 'bedrock', 'local', 'extractive')",
            name="models_provider",
        ),
        sa.CheckConstraint("context_window > 0 AND max_output_tokens > 0", name="models_sizes"),
        sa.CheckConstraint(
            "input_price_per_1m >= 0 AND output_price_per_1m >= 0", name="models_prices"
        ),
    )
    grant_app("models", role)

    op.create_table(
        "provider_credentials",
        _tenant_fk(),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("api_key_encrypted", sa.LargeBinary, nullable=False),
        sa.Column("base_url", sa.Text, nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("tenant_id", "provider"),
    )
    enable_tenant_rls("provider_credentials")
    grant_app("provider_credentials", role)

    op.create_table(
        "conversations",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        _tenant_fk(),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        *_stamps(),
    )
    op.create_index("conversations_owner", "conversations", ["tenant_id", "owner", "updated_at"])
    enable_tenant_rls("conversations")
    grant_app("conversations", role)

    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "conversation_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _tenant_fk(),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("role IN ('system', 'user', 'assistant')", name="messages_role"),
    )
    op.create_index("messages_conversation", "messages", ["conversation_id", "id"])
    enable_tenant_rls("messages")
    grant_app("messages", role)

    op.create_table(
        "usage_events",
        sa.Column("request_id", sa.String(64), primary_key=True),
        _tenant_fk(),
        sa.Column("user_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("api_key_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Numeric(18, 10), nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("ttft_ms", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("api", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("usage_events_tenant_time", "usage_events", ["tenant_id", "created_at"])
    enable_tenant_rls("usage_events")
    grant_app("usage_events", role, "SELECT, INSERT")

    op.create_table(
        "usage_daily",
        _tenant_fk(),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Numeric(20, 10), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "day", "model"),
    )
    enable_tenant_rls("usage_daily")
    grant_app("usage_daily", role, "SELECT, INSERT, UPDATE")

    op.create_table(
        "prompt_logs",
        sa.Column("request_id", sa.String(64), primary_key=True),
        _tenant_fk(),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("prompt", pg.JSONB, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("prompt_logs_tenant_time", "prompt_logs", ["tenant_id", "created_at"])
    op.create_index("prompt_logs_expiry", "prompt_logs", ["expires_at"])
    enable_tenant_rls("prompt_logs")
    grant_app("prompt_logs", role)


def downgrade() -> None:
    for table in (
        "prompt_logs",
        "usage_daily",
        "usage_events",
        "messages",
        "conversations",
        "provider_credentials",
        "models",
    ):
        op.drop_table(table)
