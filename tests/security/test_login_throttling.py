"""Finding 12 (login): ten wrong passwords from anywhere locked the real user out for minutes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from mtai.runtime import Runtime
from tests.conftest import TenantFixture


@pytest.fixture
async def stranger(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client at another address than the `client` fixture's."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def _attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_a_strangers_failures_do_not_lock_the_real_user_out(
    client: httpx.AsyncClient, stranger: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    codes = [
        (await _attempt(stranger, tenant_a.owner_email, "guess-guess")).status_code
        for _ in range(30)
    ]
    assert codes[0] == 401
    assert 429 in codes  # the stranger is slowed down
    real = await _attempt(client, tenant_a.owner_email, tenant_a.owner_password)
    assert real.status_code == 200, real.text


async def test_the_back_off_grows_with_each_failure(
    client: httpx.AsyncClient, tenant_a: TenantFixture, runtime: Runtime
) -> None:
    free = runtime.settings.login_free_failures
    for _ in range(free):
        assert (await _attempt(client, tenant_a.owner_email, "wrong-wrong")).status_code == 401
    waits = []
    for _ in range(3):
        assert (await _attempt(client, tenant_a.owner_email, "wrong-wrong")).status_code == 401
        blocked = await _attempt(client, tenant_a.owner_email, "wrong-wrong")
        assert blocked.status_code == 429
        # Even the right password waits: the back-off does not tell guesses apart.
        right = await _attempt(client, tenant_a.owner_email, tenant_a.owner_password)
        assert right.status_code == 429
        waits.append(int(blocked.headers["Retry-After"]))
        await asyncio.sleep(waits[-1])
    assert waits[0] < waits[1] < waits[2], waits
    assert (
        await _attempt(client, tenant_a.owner_email, tenant_a.owner_password)
    ).status_code == 200
