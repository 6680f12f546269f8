"""Finding 12 (auth cache): a read that began before a revocation stored the old state after
the revocation's NOTIFY had evicted it, and the revoked key kept working for the cache TTL;
and a flood of unknown API key prefixes pushed valid keys out of the cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.engine import Database
from mtai.db.notify import notify
from mtai.runtime import Runtime
from mtai.services import key_material
from mtai.services.auth import key_cache_key
from tests.conftest import TenantFixture


class PausedRead:
    """The app's own Database; the first platform() transaction, once it has read and ended,
    holds its caller until `release` is set, as a slow network would."""

    def __init__(self, real: Database) -> None:
        self._real = real
        self._armed = True
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    @asynccontextmanager
    async def platform(self) -> AsyncIterator[AsyncSession]:
        armed, self._armed = self._armed, False
        async with self._real.platform() as session:
            yield session
        if armed:
            self.read_done.set()
            await self.release.wait()


def _prefix(plaintext: str) -> str:
    prefix = key_material.prefix_of(plaintext)
    assert prefix is not None
    return prefix


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_read_that_began_before_a_revocation_does_not_cache_the_revoked_key(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = await client.post(
        "/api/v1/keys", json={"name": "barrier", "scopes": ["chat"]}, headers=tenant_a.owner
    )
    assert other.status_code == 201, other.text
    other_key = other.json()["key"]
    barrier = key_cache_key(_prefix(other_key))
    warm = await client.get("/api/v1/auth/me", headers={"X-API-Key": other_key})
    assert warm.status_code == 200, warm.text
    assert runtime.cache.get(barrier)[0]
    await asyncio.wait_for(runtime.listener_ready.wait(), 10)

    victim = key_cache_key(_prefix(tenant_a.key))
    runtime.cache.invalidate(victim)  # the next use reads the database
    paused = PausedRead(runtime.auth.db)
    monkeypatch.setattr(runtime.auth, "db", paused)

    # 1. A request reads the key (still active) from the database...
    reader = asyncio.create_task(client.get("/api/v1/auth/me", headers=tenant_a.api_key))
    await asyncio.wait_for(paused.read_done.wait(), 10)
    # 2. ...the owner revokes it meanwhile (commit + NOTIFY)...
    revoked = await client.post(f"/api/v1/keys/{tenant_a.key_id}/revoke", headers=tenant_a.owner)
    assert revoked.status_code == 200, revoked.text
    # ...and the listener has heard of it: a NOTIFY sent after it has arrived too.
    async with runtime.db.platform() as session:
        await notify(session, barrier)
    await _until(lambda: not runtime.cache.get(barrier)[0])
    # 3. ...then the slow reader goes on and stores what it read.
    paused.release.set()
    assert (await reader).status_code == 200  # it began before the revocation

    after = await client.get("/api/v1/auth/me", headers=tenant_a.api_key)
    assert after.status_code == 401, "a revoked key still works from the cache"
    assert after.json()["code"] == "api_key_revoked"


async def test_unknown_key_prefixes_do_not_evict_a_valid_key(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small cache, so the flood below is as large as a real one is against the default size.
    monkeypatch.setattr(runtime.cache, "max_entries", 50)
    valid = key_cache_key(_prefix(tenant_a.key))
    assert (await client.get("/api/v1/auth/me", headers=tenant_a.api_key)).status_code == 200
    assert runtime.cache.get(valid)[0]

    for _ in range(120):
        forged = key_material.generate().plaintext  # well-formed, unknown prefix
        response = await client.get("/api/v1/auth/me", headers={"X-API-Key": forged})
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_api_key"

    hit, state = runtime.cache.get(valid)
    assert hit, "unknown prefixes pushed the valid key out of the cache"
    assert state is not None
    assert (await client.get("/api/v1/auth/me", headers=tenant_a.api_key)).status_code == 200
