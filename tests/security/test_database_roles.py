"""Finding 11 and parts of 12: the database's second wall holds when the app's own SQL is hostile.

Each test runs SQL as the app would if an attacker controlled it (a SQL injection, or a bug
that lets a request choose a statement): through the app's tenant transactions, as the
restricted app role, and as the tenant login that production's DATABASE_URL uses.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from mtai.config import Environment, Settings
from mtai.db.engine import Database, async_url
from mtai.db.migrate import ensure_logins
from mtai.db.models import ApiKey, Tenant
from mtai.db.rls import platform_role
from mtai.errors import ConfigurationError
from mtai.runtime import Runtime, check_roles
from tests.conftest import TenantFixture, run_mtai

APP_ROLE = "mtai_app"


# --- The platform bypass is not a setting ------------------------------------------------


async def test_set_config_does_not_open_the_platform_scope(
    runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    async with runtime.db.tenant(tenant_a.id) as session:
        await session.execute(text("SELECT set_config('app.scope', 'platform', true)"))
        keys = await session.execute(select(ApiKey.id).where(ApiKey.tenant_id == tenant_b.id))
        assert keys.all() == []
        assert await session.get(Tenant, tenant_b.id) is None
    async with runtime.db.unscoped() as session:
        await session.execute(text("SELECT set_config('app.scope', 'platform', true)"))
        assert (await session.execute(select(ApiKey.id))).all() == []


async def test_no_policy_or_function_trusts_app_scope(runtime: Runtime) -> None:
    async with runtime.db.platform() as session:
        policies = (
            await session.execute(
                text(
                    "SELECT tablename, policyname FROM pg_policies WHERE schemaname = 'public' "
                    "AND (coalesce(qual, '') || coalesce(with_check, '')) LIKE '%app.scope%'"
                )
            )
        ).all()
        functions = (
            await session.execute(
                text(
                    "SELECT p.oid::regprocedure::text FROM pg_proc p "
                    "JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = 'public' AND p.prosrc LIKE '%app.scope%'"
                )
            )
        ).all()
    assert policies == []
    assert functions == []


# --- Two logins: the tenant login is not a member of the platform role --------------------


@dataclass(frozen=True)
class Logins:
    tenant_url: str
    platform_url: str


def _login_url(database_url: str, user: str, password: str) -> str:
    return (
        make_url(database_url)
        .set(username=user, password=password)
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="module")
async def logins(database_url: str) -> Logins:
    suffix = secrets.token_hex(3)
    made = Logins(
        tenant_url=_login_url(database_url, f"mtai_t_{suffix}", secrets.token_urlsafe(24)),
        platform_url=_login_url(database_url, f"mtai_p_{suffix}", secrets.token_urlsafe(24)),
    )
    await ensure_logins(
        database_url, APP_ROLE, tenant_url=made.tenant_url, platform_url=made.platform_url
    )
    return made


async def test_tenant_login_cannot_become_the_platform_role(
    logins: Logins, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    db = Database(logins.tenant_url, app_role=APP_ROLE, pool_size=1)
    try:
        with pytest.raises(DBAPIError, match="permission denied"):
            async with db.tenant(tenant_a.id) as session:
                await session.execute(text(f"SET ROLE {platform_role(APP_ROLE)}"))
        # Dropping the app role leaves the login itself (NOINHERIT), which may read nothing.
        with pytest.raises(DBAPIError, match="permission denied"):
            async with db.tenant(tenant_a.id) as session:
                await session.execute(text("RESET ROLE"))
                await session.execute(select(ApiKey.tenant_id))
        # As the app role, the old bypass setting opens nothing either.
        async with db.tenant(tenant_a.id) as session:
            await session.execute(text("SELECT set_config('app.scope', 'platform', true)"))
            keys = await session.execute(select(ApiKey.tenant_id).distinct())
            assert set(keys.scalars()) == {tenant_a.id}
            assert await session.get(Tenant, tenant_b.id) is None
    finally:
        await db.dispose()


async def test_two_logins_serve_tenant_and_platform_transactions(
    logins: Logins, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    db = Database(
        logins.tenant_url, app_role=APP_ROLE, pool_size=1, platform_url=logins.platform_url
    )
    try:
        await check_roles(db, APP_ROLE, Environment.PRODUCTION)
        async with db.platform() as session:
            seen = set((await session.execute(select(Tenant.id))).scalars())
        assert {tenant_a.id, tenant_b.id} <= seen
        async with db.tenant(tenant_a.id) as session:
            assert set((await session.execute(select(Tenant.id))).scalars()) == {tenant_a.id}
    finally:
        await db.dispose()


async def test_production_refuses_a_tenant_login_that_can_reach_the_platform_role(
    database_url: str, logins: Logins
) -> None:
    # DATABASE_URL is the owner (a member of both roles) while a platform URL is configured:
    # the separation the two URLs promise would not exist.
    db = Database(database_url, app_role=APP_ROLE, pool_size=1, platform_url=logins.platform_url)
    try:
        with pytest.raises(ConfigurationError, match="platform role"):
            await check_roles(db, APP_ROLE, Environment.PRODUCTION)
    finally:
        await db.dispose()


async def test_production_refuses_a_tenant_login_that_may_create_roles(
    database_url: str, logins: Logins
) -> None:
    # A hand-made login with CREATEROLE could RESET ROLE and grant itself the platform role.
    user = f"mtai_cr_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(24)
    owner = create_async_engine(async_url(database_url))
    try:
        async with owner.begin() as conn:
            await conn.execute(text(f"CREATE ROLE {user} LOGIN CREATEROLE PASSWORD '{password}'"))
            await conn.execute(text(f"GRANT {APP_ROLE} TO {user}"))
        db = Database(
            _login_url(database_url, user, password),
            app_role=APP_ROLE,
            pool_size=1,
            platform_url=logins.platform_url,
        )
        try:
            with pytest.raises(ConfigurationError, match="CREATEROLE"):
                await check_roles(db, APP_ROLE, Environment.PRODUCTION)
        finally:
            await db.dispose()
    finally:
        async with owner.begin() as conn:
            await conn.execute(text(f"DROP ROLE IF EXISTS {user}"))
        await owner.dispose()


async def test_migrate_creates_the_logins_the_app_then_uses(
    settings: Settings, database_url: str
) -> None:
    suffix = secrets.token_hex(3)
    tenant_url = _login_url(database_url, f"mtai_ct_{suffix}", secrets.token_urlsafe(24))
    platform_url = _login_url(database_url, f"mtai_cp_{suffix}", secrets.token_urlsafe(24))
    refused = run_mtai(
        settings,
        "migrate",
        "--create-logins",
        DATABASE_URL=tenant_url,
        MTAI_PLATFORM_DATABASE_URL=platform_url,
    )
    assert refused.returncode == 1
    assert "MTAI_DATABASE_MIGRATION_URL" in refused.stderr
    made = run_mtai(
        settings,
        "migrate",
        "--create-logins",
        DATABASE_URL=tenant_url,
        MTAI_PLATFORM_DATABASE_URL=platform_url,
        MTAI_DATABASE_MIGRATION_URL=database_url,
    )
    assert made.returncode == 0, made.stderr
    db = Database(tenant_url, app_role=APP_ROLE, pool_size=1, platform_url=platform_url)
    try:
        await check_roles(db, APP_ROLE, Environment.PRODUCTION)
        assert not await db.tenant_login_reaches_platform()
    finally:
        await db.dispose()


# --- users: the global identities ----------------------------------------------------------


async def test_tenant_scope_cannot_read_other_tenants_users(
    runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    async with runtime.db.tenant(tenant_a.id) as session:
        hashes = await session.execute(
            text("SELECT password_hash FROM users WHERE id = :id"), {"id": tenant_b.member_id}
        )
        assert hashes.all() == []
        emails = set((await session.execute(text("SELECT email FROM users"))).scalars())
    assert tenant_b.owner_email not in emails
    assert tenant_a.owner_email in emails
    async with runtime.db.unscoped() as session:
        assert (await session.execute(text("SELECT id FROM users"))).all() == []


@pytest.mark.parametrize(
    "assignment",
    [
        "is_platform_admin = true",
        "password_hash = 'x'",
        "email = 'x@evil.example'",
        "is_active = true",
        "token_version = 0",
    ],
)
async def test_tenant_scope_cannot_change_identity_columns(
    runtime: Runtime, tenant_a: TenantFixture, assignment: str
) -> None:
    with pytest.raises(DBAPIError, match="permission denied"):
        async with runtime.db.tenant(tenant_a.id) as session:
            await session.execute(
                text(f"UPDATE users SET {assignment} WHERE id = :id"), {"id": tenant_a.member_id}
            )


async def test_tenant_scope_cannot_create_identities(
    runtime: Runtime, tenant_a: TenantFixture
) -> None:
    with pytest.raises(DBAPIError, match="permission denied"):
        async with runtime.db.tenant(tenant_a.id) as session:
            await session.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, is_platform_admin) "
                    "VALUES (:id, :email, 'x', true)"
                ),
                {"id": uuid.uuid4(), "email": f"{secrets.token_hex(4)}@evil.example"},
            )


# --- Platform tables are read-only to the app role -------------------------------------------


async def test_tenant_scope_cannot_change_the_platform_catalog_or_tenants(
    runtime: Runtime, tenant_a: TenantFixture
) -> None:
    statements = [
        "UPDATE models SET base_url = 'https://evil.example/v1'",
        "UPDATE tenants SET settings = '{}'::jsonb",
    ]
    for statement in statements:
        with pytest.raises(DBAPIError, match="permission denied"):
            async with runtime.db.tenant(tenant_a.id) as session:
                await session.execute(text(statement))


# --- SECURITY DEFINER functions and a hostile search_path ----------------------------------


async def _collection(runtime: Runtime, tenant_id: uuid.UUID) -> uuid.UUID:
    collection_id = uuid.uuid4()
    async with runtime.db.tenant(tenant_id) as session:
        await session.execute(
            text(
                "INSERT INTO rag_collections (id, tenant_id, name, embedding_model, "
                "embedding_dim, created_by) VALUES (:id, :tenant, :name, 'test', 3, 'test')"
            ),
            {"id": collection_id, "tenant": tenant_id, "name": f"kb-{collection_id.hex[:8]}"},
        )
    return collection_id


async def _document(runtime: Runtime, tenant_id: uuid.UUID, collection_id: uuid.UUID) -> uuid.UUID:
    document_id = uuid.uuid4()
    async with runtime.db.tenant(tenant_id) as session:
        await session.execute(
            text(
                "INSERT INTO rag_documents (id, tenant_id, collection_id, title, size_bytes, "
                "sha256, storage_key, created_by) "
                "VALUES (:id, :tenant, :collection, 'doc', 1, :sha, 'k', 'test')"
            ),
            {
                "id": document_id,
                "tenant": tenant_id,
                "collection": collection_id,
                "sha": secrets.token_hex(32),
            },
        )
    return document_id


async def test_security_definer_function_ignores_a_temporary_shadow_table(
    runtime: Runtime, tenant_a: TenantFixture
) -> None:
    collection_id = await _collection(runtime, tenant_a.id)
    async with runtime.db.tenant(tenant_a.id) as session:
        # pg_temp comes first in a search_path that does not name it: a temporary table of
        # the same name would stand in for the owner's table inside the owner's function.
        await session.execute(
            text(
                "CREATE TEMP TABLE rag_collection_sizes (collection_id uuid, chunks bigint) "
                "ON COMMIT DROP"
            )
        )
        await session.execute(
            text("INSERT INTO rag_collection_sizes VALUES (:id, 1000000000)"),
            {"id": collection_id},
        )
        walk = await session.execute(
            text("SELECT mtai_vector_walk(ARRAY[:id]::uuid[])"), {"id": collection_id}
        )
        assert walk.scalar_one() is False


async def test_every_security_definer_function_pins_its_search_path(runtime: Runtime) -> None:
    async with runtime.db.platform() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p "
                    "JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = 'public' AND p.prosecdef"
                )
            )
        ).all()
    assert rows, "no SECURITY DEFINER function found"
    wrong = {
        name: config
        for name, config in rows
        if "search_path=pg_catalog, public, pg_temp" not in (config or [])
    }
    assert wrong == {}


# --- Composite foreign keys: no row points at another tenant's parent -----------------------


async def test_message_cannot_point_at_another_tenants_conversation(
    runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    conversation_id = uuid.uuid4()
    async with runtime.db.tenant(tenant_b.id) as session:
        await session.execute(
            text(
                "INSERT INTO conversations (id, tenant_id, owner, title, model) "
                "VALUES (:id, :tenant, 'someone', 'secret', 'extractive')"
            ),
            {"id": conversation_id, "tenant": tenant_b.id},
        )
    with pytest.raises(IntegrityError):
        async with runtime.db.tenant(tenant_a.id) as session:
            await session.execute(
                text(
                    "INSERT INTO messages (conversation_id, tenant_id, role, content, tokens) "
                    "VALUES (:conversation, :tenant, 'user', 'planted', 1)"
                ),
                {"conversation": conversation_id, "tenant": tenant_a.id},
            )


async def test_chunk_cannot_point_at_another_tenants_knowledge_base(
    runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    own_collection = await _collection(runtime, tenant_a.id)
    document_id = await _document(runtime, tenant_a.id, own_collection)
    foreign_collection = await _collection(runtime, tenant_b.id)
    with pytest.raises(IntegrityError):
        async with runtime.db.tenant(tenant_a.id) as session:
            # Without the key, the chunk would count in B's knowledge base's term statistics.
            await session.execute(
                text(
                    "INSERT INTO rag_chunks (id, tenant_id, collection_id, document_id, ordinal, "
                    "text, tokens, embedding_dim, embedding) "
                    "VALUES (:id, :tenant, :collection, :document, 0, 'planted', 1, 3, "
                    "'[1,2,3]')"
                ),
                {
                    "id": uuid.uuid4(),
                    "tenant": tenant_a.id,
                    "collection": foreign_collection,
                    "document": document_id,
                },
            )
