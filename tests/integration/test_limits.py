"""Limits and budgets through the API: exact under concurrency, shared across processes,
and a Redis outage handled by the documented policy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select

from mtai.app import create_app
from mtai.config import Settings
from mtai.db.models import UsageEvent
from mtai.providers.llm.base import Message
from mtai.runtime import Runtime
from mtai.services import tokenizer
from mtai.services.limits import reserve_tokens
from tests.conftest import AdminFixture, TenantFixture, add_model, deployment_env, make_tenant
from tests.support.fake_upstreams import Behaviour, FakeUpstream
from tests.support.redis_server import RedisProcess, free_port, owned_redis

MAX_TOKENS = 10


@pytest.fixture(scope="module")
async def redis_app(
    settings: Settings, redis_url: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A second API process of the same deployment, limiting through the shared Redis."""
    app = create_app(settings.model_copy(update={"redis_url": redis_url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://redis-app") as c:
            yield app, c


async def priced_model(runtime: Runtime, fake: FakeUpstream) -> tuple[str, Decimal, int]:
    """A model at $1 per 1,000 tokens whose upstream reports exactly the reserved tokens."""
    spec = await add_model(
        runtime, fake, "openai", input_price_per_1m=Decimal(1000), output_price_per_1m=Decimal(1000)
    )
    prompt = reserve_tokens(tokenizer.count_messages([Message("user", "hi")]), 0)
    fake.script(
        spec.upstream_model, *[Behaviour(prompt_tokens=prompt, completion_tokens=MAX_TOKENS)] * 200
    )
    per_request = spec.cost(prompt, MAX_TOKENS)
    return spec.name, per_request, prompt + MAX_TOKENS


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_budget_holds_under_200_concurrent_requests(
    client: httpx.AsyncClient,
    redis_app: tuple[FastAPI, httpx.AsyncClient],
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    platform_admin: AdminFixture,
    store: str,
) -> None:
    tenant = await make_tenant(client, runtime)
    model, per_request, _ = await priced_model(runtime, fake_upstream)
    budget = per_request * 50
    put = await client.put(
        f"/api/v1/tenants/{tenant.id}/limits",
        json={"monthly_usd": str(budget)},
        headers=platform_admin.headers,
    )
    assert put.status_code == 200, put.text
    http = client if store == "memory" else redis_app[1]
    responses = await asyncio.gather(
        *(
            http.post(
                "/api/v1/chat/",
                json={"message": "hi", "model": model, "max_tokens": MAX_TOKENS},
                headers=tenant.api_key,
            )
            for _ in range(200)
        )
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 50, statuses
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) == 150
    assert {r.json()["code"] for r in refused} == {"budget_exceeded"}
    assert int(refused[0].headers["retry-after"]) > 0
    await runtime.ledger.drain()
    for app_runtime in [] if store == "memory" else [redis_app[0].state.runtime]:
        await app_runtime.ledger.drain()
    async with runtime.db.platform() as session:
        spent = (
            await session.execute(
                select(func.sum(UsageEvent.cost_usd)).where(UsageEvent.tenant_id == tenant.id)
            )
        ).scalar_one()
    assert spent <= budget
    assert spent == budget  # every admitted request cost exactly its reservation
    view = (
        await http.get(f"/api/v1/tenants/{tenant.id}/limits", headers=platform_admin.headers)
    ).json()
    assert Decimal(view["consumption"]["monthly_usd"]["spent"]) == budget


async def test_rate_limits_and_headers_per_key(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    put = await client.put(
        f"/api/v1/keys/{tenant_a.key_id}/limits", json={"rpm": 3}, headers=tenant_a.owner
    )
    assert put.status_code == 200
    codes = []
    for _ in range(4):
        response = await client.post(
            "/api/v1/chat/", json={"message": "hi"}, headers=tenant_a.api_key
        )
        codes.append(response.status_code)
    assert codes == [200, 200, 200, 429]
    assert response.json()["code"] == "rate_limited"
    assert response.headers["x-ratelimit-limit"] == "3"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(response.headers["retry-after"]) <= 60
    # The owner's token is not bound by the key's limit.
    assert (
        await client.post("/api/v1/chat/", json={"message": "hi"}, headers=tenant_a.owner)
    ).status_code == 200
    view = (
        await client.get(f"/api/v1/keys/{tenant_a.key_id}/limits", headers=tenant_a.owner)
    ).json()
    assert view == {
        "limits": {
            "rpm": 3,
            "tpm": None,
            "concurrency": None,
            "monthly_usd": None,
            "monthly_tokens": None,
        },
        "consumption": {"rpm": 3},
    }
    bad = await client.put(
        f"/api/v1/keys/{tenant_a.key_id}/limits", json={"rpm": -1}, headers=tenant_a.owner
    )
    assert bad.status_code == 422
    assert (
        await client.put(
            f"/api/v1/keys/{tenant_a.key_id}/limits", json={"rpm": 1}, headers=tenant_a.member
        )
    ).status_code == 403


async def test_token_budget_and_tpm_refuse_before_the_upstream(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    platform_admin: AdminFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    await client.put(
        f"/api/v1/tenants/{tenant_a.id}/limits",
        json={"monthly_tokens": 100},
        headers=platform_admin.headers,
    )
    big = await client.post(
        "/api/v1/chat/",
        json={"message": "hi", "model": spec.name, "max_tokens": 500},
        headers=tenant_a.owner,
    )
    assert big.status_code == 429
    assert big.json()["code"] == "budget_exceeded"
    assert fake_upstream.count(spec.upstream_model) == 0  # refused before any upstream call
    own = (await client.get("/api/v1/limits", headers=tenant_a.owner)).json()
    assert own["limits"]["monthly_tokens"] == 100
    assert own["consumption"]["monthly_tokens"] == {"spent": 0, "reserved": 0}


def _serve(settings: Settings, redis_url: str, port: int) -> subprocess.Popen[bytes]:
    env = deployment_env(settings, REDIS_URL=redis_url)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "mtai.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def two_processes(settings: Settings, redis_url: str) -> Iterator[list[str]]:
    ports = [free_port(), free_port()]
    processes = [_serve(settings, redis_url, port) for port in ports]
    try:
        for port in ports:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "API process did not start"
                time.sleep(0.2)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


async def test_rpm_is_global_across_two_api_processes(
    client: httpx.AsyncClient,
    runtime: Runtime,
    platform_admin: AdminFixture,
    two_processes: list[str],
) -> None:
    tenant = await make_tenant(client, runtime)
    await client.put(
        f"/api/v1/tenants/{tenant.id}/limits", json={"rpm": 30}, headers=platform_admin.headers
    )
    first, second = two_processes
    async with httpx.AsyncClient(timeout=30) as http:

        async def burst(base: str, n: int) -> list[int]:
            responses = await asyncio.gather(
                *(
                    http.post(
                        f"{base}/api/v1/chat/", json={"message": "hi"}, headers=tenant.api_key
                    )
                    for _ in range(n)
                )
            )
            return [r.status_code for r in responses]

        on_first = await burst(first, 18)
        assert on_first.count(200) == 18
        on_second = await burst(second, 40)  # the second process sees the first's 18
        assert on_second.count(200) == 12, on_second
        both = await asyncio.gather(burst(first, 20), burst(second, 20))
        assert sum(codes.count(200) for codes in both) == 0  # 30 in all, not 30 per process
        assert sum(codes.count(429) for codes in both) == 40


async def _outage_app(settings: Settings, server: RedisProcess, policy: str) -> tuple[FastAPI, Any]:
    # /health probes on every call here (no reuse of the last probe), so it sees the outage at once.
    update = {"redis_url": server.url, "limits_outage_policy": policy, "health_cache_seconds": 0}
    app = create_app(settings.model_copy(update=update))
    return app, app.router.lifespan_context(app)


@pytest.mark.parametrize("policy", ["refuse", "local"])
async def test_redis_outage_follows_the_policy_and_recovers(
    client: httpx.AsyncClient,
    runtime: Runtime,
    settings: Settings,
    platform_admin: AdminFixture,
    policy: str,
) -> None:
    tenant = await make_tenant(client, runtime)
    await client.put(
        f"/api/v1/tenants/{tenant.id}/limits", json={"rpm": 5}, headers=platform_admin.headers
    )
    with owned_redis() as server:
        app, lifespan = await _outage_app(settings, server, policy)
        async with lifespan:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://outage") as http:

                async def chat() -> httpx.Response:
                    return await http.post(
                        "/api/v1/chat/", json={"message": "hi"}, headers=tenant.api_key
                    )

                assert (await chat()).status_code == 200
                assert (await http.get("/health")).json()["checks"]["redis"] == {"status": "ok"}
                server.stop()
                health = await http.get("/health")
                assert health.status_code == 503
                assert health.json()["checks"]["redis"]["status"] == "failed"
                during = [await chat() for _ in range(7)]
                codes = [r.status_code for r in during]
                assert 500 not in codes
                if policy == "refuse":
                    assert set(codes) == {503}
                    assert during[0].json()["code"] == "limits_unavailable"
                    assert int(during[0].headers["retry-after"]) >= 1
                else:
                    assert codes == [200] * 5 + [429] * 2  # the local per-process limit holds
                server.start()
                app.state.runtime.limits._down_until = 0.0  # skip the 2 s wait before retrying
                recovered = await chat()
                assert recovered.status_code in (200, 429)
                assert recovered.status_code != 503
                assert (await http.get("/health")).status_code == 200


async def test_reservation_of_a_killed_process_is_released(redis_url: str) -> None:
    code = (
        "import asyncio, os, sys\n"
        "from mtai.providers.limits.base import Check\n"
        "from mtai.providers.limits.redis_store import RedisLimitStore, connect\n"
        "async def main():\n"
        "    store = RedisLimitStore(connect(sys.argv[1]))\n"
        "    check = Check('budget', sys.argv[2], 100, 60, 1500, 'tenant monthly_usd')\n"
        "    await store.seed(check.key, 0, 60000)\n"
        "    assert (await store.admit([check], 'doomed')).allowed\n"
        "    os._exit(9)\n"
        "asyncio.run(main())\n"
    )
    key = f"mtai:test:{{killed-{os.getpid()}-{time.time_ns()}}}:usd"
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code, redis_url, key],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 9, result.stderr
    from mtai.providers.limits.base import Check
    from mtai.providers.limits.redis_store import RedisLimitStore, connect

    store = RedisLimitStore(connect(redis_url))
    check = Check("budget", key, 100, 60, 1500, "tenant monthly_usd")
    assert (await store.usage(check)).reserved == 60
    assert not (await store.admit([check], "next")).allowed  # 60 reserved + 60 > 100
    await asyncio.sleep(1.6)
    assert (await store.usage(check)).reserved == 0
    assert (await store.admit([check], "next")).allowed
    await store.aclose()


async def test_metrics_count_requests_refusals_and_bound_tenant_labels(
    client: httpx.AsyncClient, settings: Settings, tenant_a: TenantFixture
) -> None:
    await client.put(
        f"/api/v1/keys/{tenant_a.key_id}/limits", json={"rpm": 1}, headers=tenant_a.owner
    )
    for _ in range(2):
        await client.post("/api/v1/chat/", json={"message": "hi"}, headers=tenant_a.api_key)
    text = (await client.get("/metrics")).text
    tenant = str(tenant_a.id)
    assert (
        f'mtai_gateway_requests_total{{api="native",model="extractive",status="ok",tenant="{tenant}"}}'
        in text
    )
    assert f'mtai_limit_refusals_total{{reason="rate_limited",tenant="{tenant}"}} 1.0' in text
    assert "mtai_gateway_latency_seconds_bucket" in text

    from mtai.services.metrics import Metrics

    bounded = Metrics(max_tenants=2)
    assert [bounded.tenant(t) for t in ("a", "b", "c", "a")] == ["a", "b", "other", "a"]

    locked = create_app(
        settings.model_copy(update={"metrics_token": SecretStr("scrape-secret-123")})
    )
    async with locked.router.lifespan_context(locked):
        transport = httpx.ASGITransport(app=locked)
        async with httpx.AsyncClient(transport=transport, base_url="http://locked") as http:
            assert (await http.get("/metrics")).status_code == 401
            ok = await http.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
            assert ok.status_code == 200
            assert ok.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_response_cache_is_opt_in_free_and_tenant_namespaced(
    client: httpx.AsyncClient,
    redis_app: tuple[FastAPI, httpx.AsyncClient],
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    platform_admin: AdminFixture,
    store: str,
) -> None:
    http = client if store == "memory" else redis_app[1]
    spec = await add_model(runtime, fake_upstream, "openai")
    first = await make_tenant(client, runtime)
    second = await make_tenant(client, runtime)
    closed = await make_tenant(client, runtime)
    for tenant in (first, second):
        await client.patch(
            f"/api/v1/tenants/{tenant.id}",
            json={"settings": {"cache_enabled": True, "cache_ttl_seconds": 60}},
            headers=platform_admin.headers,
        )
    body = {"message": "What is 2+2?", "model": spec.name, "temperature": 0, "cache": True}

    async def ask(tenant: TenantFixture, **extra: Any) -> httpx.Response:
        response = await http.post("/api/v1/chat/", json={**body, **extra}, headers=tenant.api_key)
        assert response.status_code == 200, response.text
        return response

    miss = await ask(first)
    assert miss.headers["x-mtai-cache"] == "miss"
    assert Decimal(miss.json()["cost_usd"]) > 0
    hit = await ask(first)
    assert hit.headers["x-mtai-cache"] == "hit"
    assert hit.json()["cached"] is True
    assert hit.json()["response"] == miss.json()["response"]
    assert Decimal(hit.json()["cost_usd"]) == 0
    assert fake_upstream.count(spec.upstream_model) == 1
    assert (await ask(second)).headers["x-mtai-cache"] == "miss"  # another tenant's namespace
    assert "x-mtai-cache" not in (await ask(first, cache=False)).headers  # not asked for
    assert "x-mtai-cache" not in (await ask(closed)).headers  # tenant did not opt in
    assert fake_upstream.count(spec.upstream_model) == 4
    app_runtime = runtime if store == "memory" else redis_app[0].state.runtime
    await app_runtime.ledger.drain()
    async with runtime.db.platform() as session:
        row = await session.get(UsageEvent, (first.id, hit.json()["request_id"]))
    assert row is not None
    assert (row.cached, row.cost_usd) == (True, 0)
