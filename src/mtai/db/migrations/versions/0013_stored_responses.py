"""Stored responses of the OpenAI Responses API (issue 16): what `previous_response_id` continues.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

One row per stored response (`store: true`, OpenAI's default): the turn's own input and output
as canonical messages (a conversation is the chain of `previous_id` links, walked oldest
first), and the response object as it was returned (GET /v1/responses/{id}). A row belongs to
the user or API key that made it (`owner`, as conversations do) and, through row-level
security, to its tenant. The app role may read, add and delete rows, never change one: a
stored turn is a record of what was said.

`previous_id` has no foreign key on purpose: deleting a response must not delete or silently
shorten the conversations that continue it; continuing a chain with a deleted link is refused
instead (services/responses.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

from mtai.db.rls import enable_tenant_rls, grant_app, ident

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    role = ident(context.config.attributes["app_role"])
    op.create_table(
        "stored_responses",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("previous_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("input", pg.JSONB, nullable=False),
        sa.Column("output", pg.JSONB, nullable=False),
        sa.Column("body", pg.JSONB, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.UniqueConstraint("tenant_id", "id", name="stored_responses_tenant_id"),
        sa.CheckConstraint("id <> previous_id", name="stored_responses_not_own_previous"),
    )
    # Walking a chain reads each link by id (the primary key); listing a tenant's responses
    # goes by tenant and age, purging those past responses_retention_days by age alone.
    op.create_index("stored_responses_listing", "stored_responses", ["tenant_id", "created_at"])
    op.create_index("stored_responses_age", "stored_responses", ["created_at"])
    enable_tenant_rls("stored_responses")
    grant_app("stored_responses", role, "SELECT, INSERT, DELETE")


def downgrade() -> None:
    op.drop_table("stored_responses")
