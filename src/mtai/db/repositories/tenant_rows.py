"""A tenant's rows, table by table, as JSON: what `mtai tenant export` writes and `import` reads.

Rows travel as PostgreSQL's own JSON (row_to_json) and come back through
json_populate_recordset, so every type (uuid, timestamptz, jsonb, bytea, vector) round-trips
through its own text form. Generated columns are left to the database, and so are serial ids
(messages, audit events): rows are exported in id order and re-inserted in that order, so the
new ids keep it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.rls import ident

# Every table holding tenant data, parents before children (foreign keys). A test checks that
# each table with a tenant_id column is listed here or in NOT_EXPORTED, so a new table cannot
# be forgotten.
TENANT_TABLES: tuple[str, ...] = (
    "memberships",
    "api_keys",
    "provider_credentials",
    "conversations",
    "messages",
    "stored_responses",
    "rag_collections",
    "rag_documents",
    "rag_chunks",
    "usage_events",
    "usage_daily",
    "prompt_logs",
    "audit_events",
)
# Tables with tenant data that an archive leaves out, and why (the same test checks these).
NOT_EXPORTED: dict[str, str] = {
    "invitations": "pending invitations hold tokens; an import invites every member anew",
    "sso_providers": "its client secret is sealed to this deployment's key and its SCIM token is "
    "shown once: register the provider again after an import",
    "sso_identities": "bindings to the provider's subjects are made again as people sign in "
    "(or link) through the provider registered again",
    "scim_users": "the identity provider pushes its directory again to the new SCIM token",
    "scim_groups": "the identity provider pushes its directory again to the new SCIM token",
    "scim_group_members": "the identity provider pushes its directory again to the new SCIM token",
}
ORDER = {"messages": "id", "audit_events": "id"}
BATCH_ROWS = 500

_INSERTABLE = text(
    "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = :table AND is_generated = 'NEVER' AND is_identity = 'NO' "
    "AND coalesce(column_default, '') NOT LIKE 'nextval(%' ORDER BY ordinal_position"
)
_TABLES_WITH_TENANT = text(
    "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND column_name = 'tenant_id' ORDER BY table_name"
)


async def insertable_columns(session: AsyncSession, table: str) -> list[str]:
    result = await session.execute(_INSERTABLE, {"table": ident(table)})
    return [row[0] for row in result]


async def tables_with_tenant_column(session: AsyncSession) -> list[str]:
    return [row[0] for row in await session.execute(_TABLES_WITH_TENANT)]


async def _stream(
    session: AsyncSession, sql: str, params: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    result = await session.stream(text(sql), params)
    async for row in result:
        value = row[0]
        yield json.loads(value) if isinstance(value, str) else dict(value)


def tenant_rows(
    session: AsyncSession, table: str, tenant_id: uuid.UUID
) -> AsyncIterator[dict[str, Any]]:
    t = ident(table)
    order = f" ORDER BY {ORDER[t]}" if t in ORDER else ""
    return _stream(
        session,
        f"SELECT row_to_json(t) FROM {t} t WHERE tenant_id = :tenant{order}",
        {"tenant": tenant_id},
    )


def tenant_row(session: AsyncSession, tenant_id: uuid.UUID) -> AsyncIterator[dict[str, Any]]:
    return _stream(
        session, "SELECT row_to_json(t) FROM tenants t WHERE id = :tenant", {"tenant": tenant_id}
    )


def member_users(
    session: AsyncSession, tenant_id: uuid.UUID, columns: Sequence[str]
) -> AsyncIterator[dict[str, Any]]:
    """The tenant's members' identities, only `columns` of them (never a password hash)."""
    fields = ", ".join(f"'{ident(c)}', u.{ident(c)}" for c in columns)
    return _stream(
        session,
        f"SELECT json_build_object({fields}) FROM users u JOIN memberships m ON m.user_id = u.id "
        "WHERE m.tenant_id = :tenant ORDER BY u.created_at",
        {"tenant": tenant_id},
    )


async def users_by_email(session: AsyncSession, emails: Sequence[str]) -> dict[str, uuid.UUID]:
    result = await session.execute(
        text("SELECT email, id FROM users WHERE email = ANY(:emails)"), {"emails": list(emails)}
    )
    return {row[0]: row[1] for row in result}


async def users_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    result = await session.execute(
        text("SELECT id, email FROM users WHERE id = ANY(:ids)"), {"ids": list(ids)}
    )
    return {row[0]: row[1] for row in result}


async def narrow_to_tenant(session: AsyncSession, app_role: str, tenant_id: uuid.UUID) -> None:
    """For the rest of this (platform) transaction, act as the app role in `tenant_id`'s scope:
    row-level security checks every row written from here on as in a tenant transaction."""
    await session.execute(text(f"SET LOCAL ROLE {ident(app_role)}"))
    await session.execute(
        text("SELECT set_config('app.scope', '', true), set_config('app.tenant_id', :tid, true)"),
        {"tid": str(tenant_id)},
    )


async def tenant_exists(session: AsyncSession, tenant_id: uuid.UUID, slug: str) -> bool:
    result = await session.execute(
        text("SELECT 1 FROM tenants WHERE id = :id OR slug = :slug"),
        {"id": tenant_id, "slug": slug},
    )
    return result.first() is not None


async def insert_rows(
    session: AsyncSession, table: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert rows (as exported) into `table`, only `columns`; one statement per call."""
    if not rows:
        return
    t = ident(table)
    names = ", ".join(ident(c) for c in columns)
    await session.execute(
        text(
            f"INSERT INTO {t} ({names}) SELECT {names} "
            f"FROM json_populate_recordset(NULL::{t}, CAST(:rows AS json))"
        ),
        {"rows": json.dumps(list(rows))},
    )
