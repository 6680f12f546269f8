"""Row-level security, proven at the database: the second wall behind the application."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from mtai.db.models import ApiKey, AuditEvent, Membership, Tenant
from mtai.runtime import Runtime
from tests.conftest import TenantFixture
from tests.integration.test_rag import upload_text, wait_done

TENANT_TABLES = [Tenant, Membership, ApiKey, AuditEvent]


async def test_app_connections_are_bound_by_rls(runtime: Runtime) -> None:
    role, superuser, bypass = await runtime.db.role_flags()
    assert role == "mtai_app"
    assert not superuser
    assert not bypass


async def test_every_tenant_table_forces_rls(runtime: Runtime) -> None:
    async with runtime.db.platform() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE relname = ANY(:names)"
                ),
                {"names": [m.__tablename__ for m in TENANT_TABLES]},
            )
        ).all()
    assert {r[0] for r in rows} == {m.__tablename__ for m in TENANT_TABLES}
    assert all(r[1] and r[2] for r in rows), rows


@pytest.mark.parametrize("model", TENANT_TABLES, ids=lambda m: m.__tablename__)
async def test_no_tenant_context_sees_zero_rows(
    runtime: Runtime, tenant_a: TenantFixture, model: type
) -> None:
    async with runtime.db.platform() as session:
        assert (await session.execute(select(model))).first() is not None
    async with runtime.db.unscoped() as session:
        assert (await session.execute(select(model))).all() == []


async def test_tenant_session_cannot_read_update_or_delete_other_tenant(
    runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    async with runtime.db.tenant(tenant_a.id) as session:
        # Reading B's rows by B's ids finds nothing.
        assert await session.get(ApiKey, tenant_b.key_id) is None
        assert await session.get(Tenant, tenant_b.id) is None
        got = await session.execute(select(Membership).where(Membership.tenant_id == tenant_b.id))
        assert got.all() == []
        # Updating and deleting B's rows by id touches nothing.
        changed = await session.execute(
            update(ApiKey).where(ApiKey.id == tenant_b.key_id).values(name="pwned")
        )
        assert changed.rowcount == 0
        removed = await session.execute(
            delete(Membership).where(Membership.tenant_id == tenant_b.id)
        )
        assert removed.rowcount == 0
        # A's own rows are visible.
        assert await session.get(ApiKey, tenant_a.key_id) is not None
    # Tenants are changed by platform work only: the app role may not delete any.
    with pytest.raises(DBAPIError, match="permission denied"):
        async with runtime.db.tenant(tenant_a.id) as session:
            await session.execute(delete(Tenant).where(Tenant.id == tenant_b.id))
    async with runtime.db.platform() as session:
        key_b = await session.get(ApiKey, tenant_b.key_id)
        assert key_b is not None
        assert key_b.name == "ci"
        count = await session.execute(select(Membership).where(Membership.tenant_id == tenant_b.id))
        assert len(count.all()) == 2


async def test_tenant_session_cannot_insert_rows_for_other_tenant(
    runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    with pytest.raises(DBAPIError, match="row-level security"):
        async with runtime.db.tenant(tenant_a.id) as session:
            session.add(
                ApiKey(
                    id=uuid.uuid4(),
                    tenant_id=tenant_b.id,
                    name="smuggled",
                    prefix="x" * 12,
                    key_hash=b"x",
                    scopes=["chat"],
                )
            )
            await session.flush()


async def test_tenant_setting_does_not_leak_between_transactions(
    runtime: Runtime, tenant_a: TenantFixture
) -> None:
    async with runtime.db.tenant(tenant_a.id) as session:
        assert (await session.execute(select(ApiKey))).first() is not None
    # Exhaust the small pool so the same connections are reused without a tenant.
    for _ in range(10):
        async with runtime.db.unscoped() as session:
            current = await session.execute(text("SELECT current_setting('app.tenant_id', true)"))
            assert current.scalar_one() in (None, "")
            assert (await session.execute(select(ApiKey))).all() == []


async def test_audit_events_are_append_only_even_for_the_owner(
    runtime: Runtime, tenant_a: TenantFixture
) -> None:
    with pytest.raises(DBAPIError):
        async with runtime.db.platform() as session:
            await session.execute(update(AuditEvent).values(action="tampered"))
    with pytest.raises(DBAPIError):
        async with runtime.db.platform() as session:
            await session.execute(delete(AuditEvent))
    # The owner (no SET ROLE) is refused by the trigger too.
    with pytest.raises(DBAPIError, match="append-only"):
        async with runtime.db.platform() as session:
            await session.execute(text("RESET ROLE"))
            await session.execute(delete(AuditEvent))


async def test_keyword_search_function_reads_only_the_transactions_tenant(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    """mtai_keyword_candidates reads rag_chunks as its owner (so the GIN index serves it), and
    filters on the transaction's tenant itself: given every tenant's knowledge bases, it still
    returns only that tenant's chunks, and nothing without a tenant."""
    collections = []
    for tenant in (tenant_a, tenant_b):
        created = await upload_text(client, tenant.owner, "The diaphone sounds in fog.", title="F")
        await wait_done(client, tenant.owner, created["id"])
        collections.append(uuid.UUID(created["collection_id"]))
    call = text(
        "SELECT k.id, c.tenant_id FROM mtai_keyword_candidates("
        "CAST(:collections AS uuid[]), 'diaphone fog', 50) k JOIN rag_chunks c ON c.id = k.id"
    )
    params = {"collections": collections}
    async with runtime.db.tenant(tenant_a.id) as session:
        found = (await session.execute(call, params)).all()
    assert found
    assert {row[1] for row in found} == {tenant_a.id}
    async with runtime.db.unscoped() as session:
        assert (await session.execute(call, params)).all() == []
    async with runtime.db.platform() as session:
        # The platform scope reads every table, but keyword search is always one tenant's.
        none = (
            "SELECT count(*) FROM mtai_keyword_candidates(CAST(:collections AS uuid[]), 'fog', 5)"
        )
        assert (await session.execute(text(none), params)).scalar_one() == 0
        flags = (
            await session.execute(
                text(
                    "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE relname = 'rag_chunks'"
                )
            )
        ).one()
    # Enabled for every role; not forced on the owner, whose function above filters itself.
    assert tuple(flags) == (True, False)
