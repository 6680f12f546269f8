"""Enterprise identity (issue 18): a tenant's OIDC provider, bound SSO identities, SCIM.

- `sso_providers`: one OpenID Connect provider per tenant (issuer, client id, the client secret
  encrypted like provider keys, scopes, allowed and verified email domains, the groups claim,
  group-to-role mapping, just-in-time provisioning, enforcement) and the tenant's SCIM token
  (only its SHA-256).
- `sso_identities`: a person's subject at the tenant's provider (`issuer` + `subject`) bound to
  an mtai identity. Sign-in finds people by this binding, never by email.
- `scim_users`, `scim_groups`, `scim_group_members`: the tenant's directory as its identity
  provider pushes it. A SCIM user is a pre-authorisation (like an invitation) until the person
  signs in through the provider and is bound (`user_id`); deactivating or deleting it
  deprovisions the bound member at once.
All are tenant-owned under row-level security.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

from mtai.db.rls import enable_tenant_rls, grant_app, ident

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
TABLES = ("sso_providers", "sso_identities", "scim_users", "scim_groups", "scim_group_members")


def _tenant() -> sa.Column[Any]:
    return sa.Column(
        "tenant_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("tenants.id", ondelete="CASCADE"),
        nullable=False,
    )


def _times() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    ]


def upgrade() -> None:
    role = ident(context.config.attributes["app_role"])
    text_array = pg.ARRAY(sa.Text)
    empty = sa.text("'{}'")
    op.create_table(
        "sso_providers",
        sa.Column(
            "tenant_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("issuer", sa.Text, nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("client_secret_encrypted", sa.LargeBinary, nullable=True),
        sa.Column("scopes", text_array, nullable=False, server_default=empty),
        sa.Column("allowed_domains", text_array, nullable=False, server_default=empty),
        # Set by a platform administrator: only these route sign-in by email and allow JIT.
        sa.Column("verified_domains", text_array, nullable=False, server_default=empty),
        sa.Column("groups_claim", sa.String(100), nullable=True),
        sa.Column("group_roles", pg.JSONB, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("jit_provisioning", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("enforce_sso", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("scim_token_hash", sa.LargeBinary, nullable=True, unique=True),
        *_times(),
    )
    op.create_table(
        "sso_identities",
        _tenant(),
        sa.Column("issuer", sa.Text, nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column(
            "user_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "issuer", "subject"),
        # One binding per person and tenant: a second subject cannot take over the membership.
        sa.UniqueConstraint("tenant_id", "user_id", name="sso_identities_one_per_user"),
    )
    op.create_table(
        "scim_users",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        _tenant(),
        sa.Column("user_name", sa.String(320), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        # The resource as the provider last sent it (name, emails, ...), returned as given.
        sa.Column("resource", pg.JSONB, nullable=False, server_default=sa.text("'{}'")),
        sa.Column(
            "user_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        # The member's role when deactivated, restored if the provider reactivates them.
        sa.Column("suspended_role", sa.String(16), nullable=True),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
        *_times(),
    )
    op.execute("CREATE UNIQUE INDEX scim_users_name ON scim_users (tenant_id, lower(user_name))")
    op.create_table(
        "scim_groups",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        _tenant(),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
        *_times(),
    )
    op.execute(
        "CREATE UNIQUE INDEX scim_groups_name ON scim_groups (tenant_id, lower(display_name))"
    )
    op.create_table(
        "scim_group_members",
        _tenant(),
        sa.Column(
            "group_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("scim_groups.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "scim_user_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("scim_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("group_id", "scim_user_id"),
    )
    op.create_index("scim_group_members_user", "scim_group_members", ["scim_user_id"])
    for table in TABLES:
        enable_tenant_rls(table)
        grant_app(table, role)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
