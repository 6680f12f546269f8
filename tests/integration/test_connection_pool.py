"""The pool's liveness check: idle connections are pinged before use, ones used a moment ago
are not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from mtai.config import Settings
from mtai.db.engine import Database


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings.database_url, app_role=settings.db_app_role, pool_size=1)
    yield db
    await db.dispose()


async def _backend_pid(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(settings: Settings, pid: int) -> None:
    url = make_url(settings.database_url).set(drivername="postgresql")
    admin = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await admin.close()


async def test_a_connection_that_died_while_idle_is_replaced_before_use(
    settings: Settings, database: Database
) -> None:
    first = await _backend_pid(database)
    await _terminate(settings, first)
    await asyncio.sleep(1.1)  # past PING_AFTER_IDLE_SECONDS: the checkout pings, finds it gone

    second = await _backend_pid(database)

    assert second != first


async def test_a_connection_used_a_moment_ago_is_not_pinged_and_the_pool_recovers(
    settings: Settings, database: Database
) -> None:
    first = await _backend_pid(database)
    await _terminate(settings, first)

    # Within the window no ping runs: the statement meets the dead connection, and the error
    # says so, so that the pool discards it.
    with pytest.raises(DBAPIError) as failed:
        await _backend_pid(database)
    assert failed.value.connection_invalidated

    assert await _backend_pid(database) != first
