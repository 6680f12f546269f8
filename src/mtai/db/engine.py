"""The app's engines and its three kinds of transaction: tenant, platform, and unscoped.

Every app connection switches to a NOSUPERUSER NOBYPASSRLS role as soon as it opens (the app
role; the platform role for the platform pool), so row-level security binds it even when
DATABASE_URL logs in as the owner or a superuser.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from mtai.db.rls import ident, platform_role
from mtai.db.vectors import HNSW_EF_SEARCH
from mtai.errors import ConfigurationError

_SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")
# A pooled connection back in use within this many seconds is not pinged first: it answered a
# moment ago, and a ping costs three round trips with asyncpg (BEGIN, ";", ROLLBACK), a tenth
# of a search. Older ones are pinged, so a server restart or failover costs no request (the
# same trade as HikariCP's aliveBypassWindowMs).
PING_AFTER_IDLE_SECONDS = 1.0


def async_url(url: str) -> str:
    """Accept the usual `postgresql://` / `postgres://` spellings and pick the asyncpg driver."""
    for scheme in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url[len(scheme) :]
    raise ConfigurationError(
        "DATABASE_URL must start with postgresql:// (e.g. postgresql://user:pass@host:5432/mtai)"
    )


def _open_engine(
    url: str, role: str, pool_size: int, hnsw_ef_search: int, ping_after_idle: float
) -> AsyncEngine:
    """A pool whose connections switch to `role` as soon as they open."""
    engine = create_async_engine(
        async_url(url), pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800
    )
    dbapi_errors = (engine.dialect.loaded_dbapi.Error, OSError)

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < ping_after_idle:
            return
        try:
            dbapi_connection.ping()
        except dbapi_errors as exc:
            # The pool drops this connection and checks out a fresh one instead.
            raise DisconnectionError("pooled connection is gone") from exc

    @event.listens_for(engine.sync_engine, "connect")
    def _switch_role(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET ROLE {role}")
        # Retrieval settings, per connection so that a search is one round trip. The
        # iterative scan keeps HNSW returning enough rows when RLS and filters drop many.
        cursor.execute(f"SET hnsw.ef_search = {int(hnsw_ef_search)}")
        cursor.execute("SET hnsw.iterative_scan = 'relaxed_order'")
        cursor.close()
        # The driver opened a transaction for SET; a later rollback would undo the role.
        dbapi_connection.commit()

    return engine


class Database:
    """Tenant transactions run as the app role; platform ones as the platform role.

    With `platform_url` (production), platform transactions use a second pool whose login is a
    member of the platform role only, and DATABASE_URL's login needs to be a member of the app
    role only: SQL run through a tenant connection cannot reach the platform role. Without it
    (the embedded server, development), one login that may SET ROLE to both serves both: a
    platform transaction switches with SET LOCAL ROLE, and ends back as the app role.
    """

    def __init__(
        self,
        url: str,
        *,
        app_role: str,
        platform_url: str | None = None,
        pool_size: int = 10,
        platform_pool_size: int = 5,
        hnsw_ef_search: int = HNSW_EF_SEARCH,
        ping_after_idle: float = PING_AFTER_IDLE_SECONDS,
    ) -> None:
        self.pool_size = pool_size
        self.app_role = ident(app_role)
        self.platform_role = platform_role(app_role)
        self.engine: AsyncEngine = _open_engine(
            url, self.app_role, pool_size, hnsw_ef_search, ping_after_idle
        )
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.platform_engine: AsyncEngine | None = None
        self._platform_sessions: async_sessionmaker[AsyncSession] | None = None
        if platform_url is not None:
            self.platform_engine = _open_engine(
                platform_url,
                self.platform_role,
                platform_pool_size,
                hnsw_ef_search,
                ping_after_idle,
            )
            self._platform_sessions = async_sessionmaker(
                self.platform_engine, expire_on_commit=False
            )
        self._switch_to_platform = text(f"SET LOCAL ROLE {self.platform_role}")

    @property
    def separate_platform_login(self) -> bool:
        return self.platform_engine is not None

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.platform_engine is not None:
            await self.platform_engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def role_flags(self, *, platform: bool = False) -> tuple[str, bool, bool]:
        """(current role, superuser?, bypasses RLS?) as the app's tenant (or platform)
        transactions see themselves."""
        query = text(
            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        if platform:
            async with self.platform() as session:
                row = (await session.execute(query)).one()
        else:
            async with self.engine.connect() as conn:
                row = (await conn.execute(query)).one()
        return str(row[0]), bool(row[1]), bool(row[2])

    async def tenant_login_reaches_platform(self) -> bool:
        """Whether DATABASE_URL's login could SET ROLE to the platform role: a member of it, or
        a login that could make itself one (CREATEROLE, superuser) after a RESET ROLE."""
        async with self.engine.connect() as conn:
            member = await conn.execute(
                text(
                    "SELECT pg_has_role(session_user, :role, 'MEMBER') OR r.rolcreaterole "
                    "OR r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.rolname = session_user"
                ),
                {"role": self.platform_role},
            )
            return bool(member.scalar_one())

    @asynccontextmanager
    async def tenant(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
        """A transaction that sees only `tenant_id`'s rows; commits on success."""
        async with self._sessions() as session, session.begin():
            await session.execute(_SET_TENANT, {"tenant_id": str(tenant_id)})
            yield session

    @asynccontextmanager
    async def platform(self) -> AsyncIterator[AsyncSession]:
        """The explicit cross-tenant bypass, as the platform role: platform admin work and
        credential resolution."""
        if self._platform_sessions is not None:
            async with self._platform_sessions() as session, session.begin():
                yield session
            return
        async with self._sessions() as session, session.begin():
            await session.execute(self._switch_to_platform)
            yield session

    @asynccontextmanager
    async def unscoped(self) -> AsyncIterator[AsyncSession]:
        """No tenant at all: the model catalog; tenant tables and users return nothing."""
        async with self._sessions() as session, session.begin():
            yield session
