"""The app's engine and its three kinds of transaction: tenant, platform, and identity.

Every app connection switches to the NOSUPERUSER NOBYPASSRLS app role as soon as it opens,
so row-level security binds it even when DATABASE_URL logs in as the owner or a superuser.
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

from mtai.db.rls import ident
from mtai.db.vectors import HNSW_EF_SEARCH
from mtai.errors import ConfigurationError

_SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")
_SET_PLATFORM = text("SELECT set_config('app.scope', 'platform', true)")
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


class Database:
    def __init__(
        self,
        url: str,
        *,
        app_role: str,
        pool_size: int = 10,
        hnsw_ef_search: int = HNSW_EF_SEARCH,
        ping_after_idle: float = PING_AFTER_IDLE_SECONDS,
    ) -> None:
        self.pool_size = pool_size
        self.engine: AsyncEngine = create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=1800,
        )
        role = ident(app_role)
        dbapi_errors = (self.engine.dialect.loaded_dbapi.Error, OSError)

        @event.listens_for(self.engine.sync_engine, "checkin")
        def _checked_in(_dbapi_connection: Any, record: Any) -> None:
            record.info["idle_since"] = time.monotonic()

        @event.listens_for(self.engine.sync_engine, "checkout")
        def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
            idle_since = record.info.get("idle_since")
            if idle_since is None or time.monotonic() - idle_since < ping_after_idle:
                return
            try:
                dbapi_connection.ping()
            except dbapi_errors as exc:
                # The pool drops this connection and checks out a fresh one instead.
                raise DisconnectionError("pooled connection is gone") from exc

        @event.listens_for(self.engine.sync_engine, "connect")
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

        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def role_flags(self) -> tuple[str, bool, bool]:
        """(current role, superuser?, bypasses RLS?) as the app's connections see themselves."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles "
                        "WHERE rolname = current_user"
                    )
                )
            ).one()
        return str(row[0]), bool(row[1]), bool(row[2])

    @asynccontextmanager
    async def tenant(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
        """A transaction that sees only `tenant_id`'s rows; commits on success."""
        async with self._sessions() as session, session.begin():
            await session.execute(_SET_TENANT, {"tenant_id": str(tenant_id)})
            yield session

    @asynccontextmanager
    async def platform(self) -> AsyncIterator[AsyncSession]:
        """The explicit cross-tenant bypass: platform admin work and credential resolution."""
        async with self._sessions() as session, session.begin():
            await session.execute(_SET_PLATFORM)
            yield session

    @asynccontextmanager
    async def unscoped(self) -> AsyncIterator[AsyncSession]:
        """No tenant at all: global tables (users) only; tenant tables return nothing."""
        async with self._sessions() as session, session.begin():
            yield session
