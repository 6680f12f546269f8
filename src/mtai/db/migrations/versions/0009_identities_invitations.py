"""Invitations, activation tokens, per-user token versions (security issue, finding 1 and 10).

A membership is made only by the person accepting an invitation (its token proves the invitation
reached them); no one but the person sets the password of an identity. `password_hash` may be
NULL (an identity that must activate again, e.g. imported): NULL never verifies.
`token_version` is carried by every access token; bumping it ends every session at once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

from mtai.db.rls import enable_tenant_rls, grant_app, ident

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")


def upgrade() -> None:
    role = ident(context.config.attributes["app_role"])
    op.add_column(
        "users",
        sa.Column("token_version", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.alter_column("users", "password_hash", existing_type=sa.Text, nullable=True)
    # True once the person proved they read the address's mail (accepted a token that was
    # only mailed); only then are invitations listed to them by email.
    op.add_column(
        "users",
        sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()),
    )

    op.create_table(
        "invitations",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        # NULL only for a platform activation the operator issued (no tenant, platform scope).
        sa.Column(
            "tenant_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("platform_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),
        # Whether anyone but the mailbox saw the token (the inviting admin, the CLI's output).
        sa.Column("token_shown", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column(
            "invited_by",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "accepted_user_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.CheckConstraint("email = lower(email)", name="invitations_email_lowercase"),
        sa.CheckConstraint(
            "role IS NULL OR role IN ('owner', 'admin', 'member')", name="invitations_role"
        ),
        sa.CheckConstraint(
            "(tenant_id IS NULL) = (role IS NULL)", name="invitations_tenant_has_role"
        ),
        # A platform activation names no tenant, and a tenant's invitation never carries
        # platform rights: a tenant transaction (RLS: its own tenant_id only) cannot mint them.
        sa.CheckConstraint(
            "platform_admin = (tenant_id IS NULL)", name="invitations_has_a_purpose"
        ),
    )
    # One pending invitation per email and tenant (re-inviting replaces its token).
    op.execute(
        "CREATE UNIQUE INDEX invitations_pending ON invitations "
        "(coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), email) "
        "WHERE accepted_at IS NULL AND revoked_at IS NULL"
    )
    op.create_index("invitations_email", "invitations", ["email"])
    op.create_index("invitations_tenant_time", "invitations", ["tenant_id", "created_at"])
    enable_tenant_rls("invitations")
    grant_app("invitations", role)


def downgrade() -> None:
    op.drop_table("invitations")
    op.execute("UPDATE users SET password_hash = '!' WHERE password_hash IS NULL")
    op.alter_column("users", "password_hash", existing_type=sa.Text, nullable=False)
    op.drop_column("users", "email_verified")
    op.drop_column("users", "token_version")
