"""Finding 2: a client-chosen X-Request-ID must not be the ledger key or the limiter's member.

The attacks, over HTTP, with one fixed X-Request-ID on every request: billing and mandatory
prompt logging evaded (4 chats, 1 ledger row), a key's concurrency and rpm limits bypassed,
and on Redis reservations leaked for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mtai.app import create_app
from mtai.config import Settings
from mtai.db.models import PromptLog, UsageEvent
from mtai.runtime import Runtime
from tests.conftest import AdminFixture, TenantFixture, add_model, make_tenant
from tests.support.fake_upstreams import Behaviour, FakeUpstream

FIXED = "fixed-request-id-0001"


@pytest.fixture(scope="module")
async def redis_app(
    settings: Settings, redis_url: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Another API process of the same deployment, limiting through the shared Redis."""
    app = create_app(settings.model_copy(update={"redis_url": redis_url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://redis-app") as c:
            yield app, c


def http_for(
    store: str, client: httpx.AsyncClient, redis_app: tuple[FastAPI, httpx.AsyncClient]
) -> httpx.AsyncClient:
    return client if store == "memory" else redis_app[1]


async def test_fixed_request_id_leaves_one_ledger_row_and_prompt_log_per_request(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    platform_admin: AdminFixture,
) -> None:
    patched = await client.patch(
        f"/api/v1/tenants/{tenant_a.id}",
        json={"settings": {"log_prompts": True, "prompt_log_retention_days": 7}},
        headers=platform_admin.headers,
    )
    assert patched.status_code == 200, patched.text
    server_ids = []
    for n in range(4):
        response = await client.post(
            "/api/v1/chat/",
            json={"message": f"question {n}", "model": "extractive"},
            headers={**tenant_a.api_key, "X-Request-ID": FIXED},
        )
        assert response.status_code == 200, response.text
        # The id the server made is the one an operator looks up; the client's is echoed apart.
        assert response.headers["x-request-id"] != FIXED
        assert response.headers["x-client-request-id"] == FIXED
        assert response.json()["request_id"] == response.headers["x-request-id"]
        server_ids.append(response.headers["x-request-id"])
    assert len(set(server_ids)) == 4
    await runtime.ledger.drain()
    async with runtime.db.platform() as session:
        events = list(
            (
                await session.execute(select(UsageEvent).where(UsageEvent.tenant_id == tenant_a.id))
            ).scalars()
        )
        logs = list(
            (
                await session.execute(select(PromptLog).where(PromptLog.tenant_id == tenant_a.id))
            ).scalars()
        )
    assert sorted(e.request_id for e in events) == sorted(server_ids)
    assert {e.client_request_id for e in events} == {FIXED}
    assert sorted(p.request_id for p in logs) == sorted(server_ids)


async def test_another_tenants_request_id_cannot_shadow_a_ledger_row(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    """Both tenants send the same X-Request-ID: each keeps its own ledger row."""
    for tenant in (tenant_a, tenant_b):
        response = await client.post(
            "/api/v1/chat/",
            json={"message": "hello", "model": "extractive"},
            headers={**tenant.api_key, "X-Request-ID": "shared-id"},
        )
        assert response.status_code == 200, response.text
    await runtime.ledger.drain()
    async with runtime.db.platform() as session:
        for tenant in (tenant_a, tenant_b):
            rows = (
                await session.execute(select(UsageEvent).where(UsageEvent.tenant_id == tenant.id))
            ).scalars()
            assert len(list(rows)) == 1


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_fixed_request_id_does_not_bypass_key_concurrency(
    client: httpx.AsyncClient,
    redis_app: tuple[FastAPI, httpx.AsyncClient],
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    store: str,
) -> None:
    tenant = await make_tenant(client, runtime)
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    fake_upstream.script(spec.upstream_model, *[Behaviour(kind="slow", delay=0.6)] * 6)
    http = http_for(store, client, redis_app)
    put = await http.put(
        f"/api/v1/keys/{tenant.key_id}/limits", json={"concurrency": 2}, headers=tenant.owner
    )
    assert put.status_code == 200, put.text
    responses = await asyncio.gather(
        *(
            http.post(
                "/api/v1/chat/",
                json={"message": "hi", "model": spec.name, "max_tokens": 5},
                headers={**tenant.api_key, "X-Request-ID": FIXED},
            )
            for _ in range(6)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429, 429, 429, 429], statuses


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_fixed_request_id_does_not_bypass_rpm(
    client: httpx.AsyncClient,
    redis_app: tuple[FastAPI, httpx.AsyncClient],
    runtime: Runtime,
    store: str,
) -> None:
    tenant = await make_tenant(client, runtime)
    http = http_for(store, client, redis_app)
    put = await http.put(
        f"/api/v1/keys/{tenant.key_id}/limits", json={"rpm": 2}, headers=tenant.owner
    )
    assert put.status_code == 200, put.text
    statuses = []
    for _ in range(8):
        response = await http.post(
            "/api/v1/chat/",
            json={"message": "hi", "model": "extractive"},
            headers={**tenant.api_key, "X-Request-ID": FIXED},
        )
        statuses.append(response.status_code)
    assert statuses == [200, 200] + [429] * 6, statuses


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_fixed_request_id_does_not_leak_reservations(
    client: httpx.AsyncClient,
    redis_app: tuple[FastAPI, httpx.AsyncClient],
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    platform_admin: AdminFixture,
    store: str,
) -> None:
    """Overlapping requests with one id: once all have ended nothing stays reserved."""
    tenant = await make_tenant(client, runtime)
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    fake_upstream.script(
        spec.upstream_model,
        *[Behaviour(kind="slow", delay=0.4, prompt_tokens=10, completion_tokens=5)] * 3,
    )
    http = http_for(store, client, redis_app)
    put = await http.put(
        f"/api/v1/tenants/{tenant.id}/limits",
        json={"monthly_tokens": 1_000_000, "tpm": 1_000_000},
        headers=platform_admin.headers,
    )
    assert put.status_code == 200, put.text
    responses = await asyncio.gather(
        *(
            http.post(
                "/api/v1/chat/",
                json={"message": "hi", "model": spec.name, "max_tokens": 50},
                headers={**tenant.api_key, "X-Request-ID": FIXED},
            )
            for _ in range(3)
        )
    )
    assert [r.status_code for r in responses] == [200] * 3
    view = (
        await http.get(f"/api/v1/tenants/{tenant.id}/limits", headers=platform_admin.headers)
    ).json()
    assert view["consumption"]["monthly_tokens"] == {"spent": 45, "reserved": 0}
    assert view["consumption"]["tpm"] == 45
