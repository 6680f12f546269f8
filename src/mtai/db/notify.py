"""Cross-process cache invalidation over PostgreSQL LISTEN/NOTIFY.

A change (key revoked, tenant suspended, role changed) notifies inside its own transaction,
so every API process hears of it the moment it commits, without Redis and without polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.engine import async_url
from mtai.logging import get_logger

CHANNEL = "mtai_auth"
log = get_logger(__name__)


async def notify(session: AsyncSession, payload: str) -> None:
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
    )


def _dsn(url: str) -> str:
    return (
        make_url(async_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)
    )


async def listen(
    url: str,
    on_message: Callable[[str], None],
    on_reconnect: Callable[[], None],
    *,
    retry_seconds: float = 1.0,
) -> None:
    """Deliver every notification to `on_message` until cancelled; reconnect on loss.

    Notifications sent while disconnected are lost, so `on_reconnect` must drop whatever
    they might have invalidated.
    """
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(_dsn(url))
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: on_message(payload))
            on_reconnect()
            await lost.wait()
            log.warning("auth_listener.connection_lost")
        except asyncio.CancelledError:
            raise
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("auth_listener.unavailable", error=str(exc))
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close(timeout=2)
        await asyncio.sleep(retry_seconds)
