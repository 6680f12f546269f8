"""Finding 12 (login): ten wrong passwords from anywhere locked the real user out for minutes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from mtai.app import create_app
from mtai.config import Settings
from mtai.runtime import Runtime
from tests.conftest import TenantFixture


@pytest.fixture(params=["in-process", "redis"])
async def addresses(
    request: pytest.FixtureRequest,
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    redis_url: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(a stranger's client, the real user's client) at two addresses: on the test app (in-process
    back-off), or on another API process of the deployment whose back-off is in Redis."""
    if request.param == "in-process":
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c, client
        return
    shared = create_app(settings.model_copy(update={"redis_url": redis_url}))
    async with shared.router.lifespan_context(shared):
        far = httpx.ASGITransport(app=shared, client=("203.0.113.9", 40000))
        near = httpx.ASGITransport(app=shared, client=("127.0.0.1", 40001))
        async with (
            httpx.AsyncClient(transport=far, base_url="http://redis-app") as stranger,
            httpx.AsyncClient(transport=near, base_url="http://redis-app") as real,
        ):
            yield stranger, real


async def _attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_a_strangers_failures_do_not_lock_the_real_user_out(
    addresses: tuple[httpx.AsyncClient, httpx.AsyncClient], tenant_a: TenantFixture
) -> None:
    stranger, client = addresses
    codes = [
        (await _attempt(stranger, tenant_a.owner_email, "guess-guess")).status_code
        for _ in range(30)
    ]
    assert codes[0] == 401
    assert 429 in codes  # the stranger is slowed down
    real = await _attempt(client, tenant_a.owner_email, tenant_a.owner_password)
    assert real.status_code == 200, real.text
    # The stranger, back at their own address, still waits (the right password too).
    again = await _attempt(stranger, tenant_a.owner_email, tenant_a.owner_password)
    assert again.status_code == 429
    assert again.json()["code"] == "login_backoff"


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


async def test_guesses_sent_at_once_do_not_slip_past_the_back_off(
    addresses: tuple[httpx.AsyncClient, httpx.AsyncClient],
    tenant_a: TenantFixture,
    runtime: Runtime,
) -> None:
    """All checked before any failure was counted, 40 parallel guesses were 40 password tries."""
    stranger, _ = addresses
    guesses = await asyncio.gather(
        *(_attempt(stranger, tenant_a.owner_email, f"guess-{n:04d}-guess") for n in range(40))
    )
    tried = [r for r in guesses if r.status_code == 401]
    refused = [r for r in guesses if r.status_code == 429]
    assert len(tried) + len(refused) == len(guesses), [r.text for r in guesses]
    assert len(tried) <= runtime.settings.login_free_failures + 1, len(tried)


async def test_a_new_ipv6_address_per_guess_is_still_the_same_client(
    app: FastAPI, tenant_a: TenantFixture
) -> None:
    """One host holds a whole /64: an address per guess escaped the back-off and the cap."""
    codes = []
    for n in range(1, 16):
        transport = httpx.ASGITransport(app=app, client=(f"2001:db8:7:9::{n:x}", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as guesser:
            codes.append((await _attempt(guesser, tenant_a.owner_email, "guess-guess")).status_code)
    assert codes[0] == 401
    assert 429 in codes, codes
    elsewhere = httpx.ASGITransport(app=app, client=("2001:db8:7:a::1", 40000))
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://test") as other:
        real = await _attempt(other, tenant_a.owner_email, tenant_a.owner_password)
    assert real.status_code == 200, real.text
