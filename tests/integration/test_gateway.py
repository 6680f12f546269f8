"""The gateway end to end: providers over their real wire protocols, router, ledger, both APIs."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mtai.db.models import PromptLog, ProviderCredential, UsageDaily, UsageEvent
from mtai.errors import ConfigurationError
from mtai.runtime import Runtime
from tests.conftest import TenantFixture, add_model
from tests.support.fake_upstreams import Behaviour, FakeUpstream

PROVIDERS = ["openai", "anthropic", "bedrock"]


def cost(prompt: int, completion: int, inp: str = "3", out: str = "15") -> Decimal:
    return (prompt * Decimal(inp) + completion * Decimal(out)) / Decimal(1_000_000)


async def usage_row(runtime: Runtime, request_id: str) -> UsageEvent:
    """The ledger row of a request, once the background drain has moved it to Postgres."""
    for _ in range(100):
        await runtime.ledger.drain()
        async with runtime.db.platform() as session:
            # Request ids are made by the server, so one id names one row (of one tenant).
            row = (
                await session.execute(select(UsageEvent).where(UsageEvent.request_id == request_id))
            ).scalar_one_or_none()
        if row is not None:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"no usage row for {request_id}")


async def rows_for(runtime: Runtime, tenant: TenantFixture) -> list[UsageEvent]:
    await runtime.ledger.drain()
    async with runtime.db.platform() as session:
        result = await session.execute(select(UsageEvent).where(UsageEvent.tenant_id == tenant.id))
        return list(result.scalars())


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        name, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        events.append((name, json.loads(data) if data and data != "[DONE]" else {}))
    return events


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_native_chat_with_each_provider(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    provider: str,
) -> None:
    spec = await add_model(runtime, fake_upstream, provider)
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text="Paris is the capital.", prompt_tokens=31, completion_tokens=6),
    )
    response = await client.post(
        "/api/v1/chat/",
        json={
            "message": "Capital of France?",
            "model": spec.name,
            "temperature": 0.2,
            "max_tokens": 50,
        },
        headers=tenant_a.member,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response"] == "Paris is the capital."
    assert body["model_used"] == spec.name
    assert body["tokens_used"] == {"prompt": 31, "completion": 6, "total": 37}
    assert Decimal(body["cost_usd"]) == cost(31, 6)
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["latency_ms"] >= 0
    row = await usage_row(runtime, body["request_id"])
    assert (row.status, row.provider, row.prompt_tokens, row.completion_tokens) == (
        "ok",
        provider,
        31,
        6,
    )
    assert row.cost_usd == cost(31, 6)
    assert row.user_id == tenant_a.member_id

    # The conversation continues with its history sent upstream.
    again = await client.post(
        "/api/v1/chat/",
        json={
            "message": "And of Italy?",
            "model": spec.name,
            "conversation_id": body["conversation_id"],
        },
        headers=tenant_a.member,
    )
    assert again.status_code == 200
    sent = fake_upstream.requests[-1].json
    texts = json.dumps(sent)
    assert "Capital of France?" in texts
    assert "Paris is the capital." in texts
    assert "And of Italy?" in texts
    detail = (
        await client.get(
            f"/api/v1/chat/conversations/{body['conversation_id']}", headers=tenant_a.member
        )
    ).json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "user", "assistant"]
    assert detail["title"] == "Capital of France?"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_native_streaming_with_each_provider(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    provider: str,
) -> None:
    spec = await add_model(runtime, fake_upstream, provider)
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text="One two three four five.", prompt_tokens=12, completion_tokens=5),
    )
    response = await client.post(
        "/api/v1/chat/",
        json={"message": "Count", "model": spec.name, "stream": True},
        headers=tenant_a.api_key,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert events[0][0] == "start"
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) >= 3
    assert "".join(deltas) == "One two three four five."
    done = events[-1]
    assert done[0] == "done"
    assert done[1]["tokens_used"] == {"prompt": 12, "completion": 5, "total": 17}
    assert Decimal(done[1]["cost_usd"]) == cost(12, 5)
    row = await usage_row(runtime, done[1]["request_id"])
    assert row.status == "ok"
    assert row.api_key_id == tenant_a.key_id
    assert row.ttft_ms is not None
    conversations = (
        await client.get("/api/v1/chat/conversations", headers=tenant_a.api_key)
    ).json()
    assert conversations["items"][0]["id"] == events[0][1]["conversation_id"]


async def test_retries_on_429_then_succeeds(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=2)
    fake_upstream.script(
        spec.upstream_model, Behaviour(kind="429"), Behaviour(kind="500"), Behaviour()
    )
    response = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
    )
    assert response.status_code == 200
    assert fake_upstream.count(spec.upstream_model) == 3
    rows = [r for r in await rows_for(runtime, tenant_a) if r.model == spec.name]
    assert len(rows) == 1  # one request, one ledger row, whatever the retries


async def test_falls_back_to_the_next_model(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    backup = await add_model(
        runtime,
        fake_upstream,
        "anthropic",
        input_price_per_1m=Decimal("1"),
        output_price_per_1m=Decimal("2"),
    )
    primary = await add_model(
        runtime, fake_upstream, "openai", max_retries=1, fallbacks=[backup.name]
    )
    fake_upstream.script(primary.upstream_model, Behaviour(kind="500"), Behaviour(kind="500"))
    fake_upstream.script(
        backup.upstream_model,
        Behaviour(text="from the backup", prompt_tokens=10, completion_tokens=3),
    )
    response = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": primary.name}, headers=tenant_a.owner
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_used"] == backup.name
    assert body["response"] == "from the backup"
    assert Decimal(body["cost_usd"]) == cost(10, 3, "1", "2")  # the model that answered is billed
    assert fake_upstream.count(primary.upstream_model) == 2


async def test_timeouts_and_malformed_bodies_fail_over_or_502(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    backup = await add_model(runtime, fake_upstream, "bedrock")
    slow = await add_model(
        runtime,
        fake_upstream,
        "openai",
        timeout_seconds=0.3,
        max_retries=0,
        fallbacks=[backup.name],
    )
    fake_upstream.script(slow.upstream_model, Behaviour(kind="timeout", delay=3))
    ok = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": slow.name}, headers=tenant_a.owner
    )
    assert ok.status_code == 200
    assert ok.json()["model_used"] == backup.name

    broken = await add_model(runtime, fake_upstream, "anthropic", max_retries=1)
    fake_upstream.script(
        broken.upstream_model, Behaviour(kind="malformed"), Behaviour(kind="malformed")
    )
    failed = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": broken.name}, headers=tenant_a.owner
    )
    assert failed.status_code == 502
    assert failed.json()["code"] == "upstream_error"
    assert "malformed" in failed.json()["detail"]
    row = await usage_row(runtime, failed.json()["request_id"])
    assert (row.status, row.error_code, row.cost_usd) == ("error", "upstream_error", 0)


async def test_circuit_breaker_skips_a_failing_upstream(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    fake_upstream.script(spec.upstream_model, *[Behaviour(kind="500")] * 5)
    for _ in range(5):
        response = await client.post(
            "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
        )
        assert response.status_code == 502
    assert fake_upstream.count(spec.upstream_model) == 5
    skipped = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
    )
    assert skipped.status_code == 503
    assert skipped.json()["code"] == "upstream_unavailable"
    assert fake_upstream.count(spec.upstream_model) == 5  # not called while open
    # After the cool-down one probe goes through, and success closes the breaker.
    for breaker_key in list(runtime.gateway.router.breaker._states):
        runtime.gateway.router.breaker._states[breaker_key].opened_at = 0.0
    probe = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
    )
    assert probe.status_code == 200
    assert fake_upstream.count(spec.upstream_model) == 6


async def test_non_retryable_upstream_errors_are_not_retried(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=3, api_key=None)
    response = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
    )
    assert response.status_code == 502  # the fake refuses a missing key with 401
    assert "refused" in response.json()["detail"]
    assert fake_upstream.count(spec.upstream_model) == 1


async def test_tenant_credentials_replace_the_platform_key_and_are_encrypted(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    put = await client.put(
        "/api/v1/provider-credentials/openai",
        json={"api_key": "tenant-own-key-123"},
        headers=tenant_a.owner,
    )
    assert put.status_code == 200
    assert "tenant-own-key-123" not in put.text
    listed = await client.get("/api/v1/provider-credentials", headers=tenant_a.owner)
    assert listed.json() == [{"provider": "openai", "base_url": None}]
    await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
    )
    assert fake_upstream.requests[-1].headers["authorization"] == "Bearer tenant-own-key-123"
    async with runtime.db.platform() as session:
        stored = (
            await session.execute(
                select(ProviderCredential).where(ProviderCredential.tenant_id == tenant_a.id)
            )
        ).scalar_one()
    assert b"tenant-own-key-123" not in stored.api_key_encrypted
    assert (
        await client.delete("/api/v1/provider-credentials/openai", headers=tenant_a.owner)
    ).status_code == 204
    await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
    )
    assert fake_upstream.requests[-1].headers["authorization"] == "Bearer platform-key"
    assert (
        await client.put(
            "/api/v1/provider-credentials/openai", json={"api_key": "x"}, headers=tenant_a.member
        )
    ).status_code == 403


async def test_model_rules_and_bad_chat_input(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    platform_admin: Any,
) -> None:
    allowed = await add_model(
        runtime, fake_upstream, "openai", max_output_tokens=100, context_window=500
    )
    other = await add_model(runtime, fake_upstream, "openai")
    settings = {"allowed_models": [allowed.name], "default_model": allowed.name}
    patched = await client.patch(
        f"/api/v1/tenants/{tenant_a.id}",
        json={"settings": settings},
        headers=platform_admin.headers,
    )
    assert patched.status_code == 200
    listed = (await client.get("/api/v1/chat/models", headers=tenant_a.member)).json()
    assert [m["name"] for m in listed] == [allowed.name]
    assert listed[0]["is_default"] is True
    default = await client.post("/api/v1/chat/", json={"message": "hi"}, headers=tenant_a.member)
    assert default.json()["model_used"] == allowed.name

    def chat(**body: Any) -> Any:
        return client.post("/api/v1/chat/", json={"message": "hi", **body}, headers=tenant_a.member)

    cases = [
        (await chat(model=other.name), 403, "model_not_allowed"),
        (await chat(model="no-such-model"), 404, "model_not_found"),
        (await chat(temperature=2.5), 422, "validation_error"),
        (await chat(temperature=-1), 422, "validation_error"),
        (await chat(max_tokens=101), 422, "validation_error"),
        (await chat(max_tokens=0), 422, "validation_error"),
        (await chat(message="word " * 600), 422, "context_length_exceeded"),
        (await chat(message=""), 422, "validation_error"),
        (await chat(message="   "), 422, "validation_error"),
        (await chat(message="x" * 100_001), 422, "validation_error"),
        (await chat(conversation_id="not-a-uuid"), 422, "validation_error"),
        (
            await chat(conversation_id="00000000-0000-0000-0000-000000000000"),
            404,
            "conversation_not_found",
        ),
        (await chat(unknown_field=1), 422, "validation_error"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["code"] == code, response.text
    bad_settings = await client.patch(
        f"/api/v1/tenants/{tenant_a.id}",
        json={"settings": {"allowed_models": "all"}},
        headers=platform_admin.headers,
    )
    assert bad_settings.status_code == 422


async def test_conversations_are_private_to_their_owner(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    mine = await client.post(
        "/api/v1/chat/",
        json={"message": "secret plans", "model": "extractive"},
        headers=tenant_a.member,
    )
    assert mine.status_code == 200
    conversation_id = mine.json()["conversation_id"]
    for other in (tenant_a.owner, tenant_a.api_key):  # same tenant, other principal
        assert (
            await client.get(f"/api/v1/chat/conversations/{conversation_id}", headers=other)
        ).status_code == 404
        assert (
            conversation_id
            not in (await client.get("/api/v1/chat/conversations", headers=other)).text
        )
    assert (
        await client.delete(
            f"/api/v1/chat/conversations/{conversation_id}", headers=tenant_a.member
        )
    ).status_code == 204
    assert (
        await client.get(f"/api/v1/chat/conversations/{conversation_id}", headers=tenant_a.member)
    ).status_code == 404


async def test_extractive_answerer_says_no_model_is_configured(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    response = await client.post(
        "/api/v1/chat/", json={"message": "hello", "model": "extractive"}, headers=tenant_a.member
    )
    body = response.json()
    assert "No language model is configured" in body["response"]
    assert Decimal(body["cost_usd"]) == 0
    assert body["tokens_used"]["prompt"] > 0
    assert body["tokens_used"]["completion"] > 0


async def test_usage_ledger_one_row_per_request_and_daily_rollup(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    fake_upstream.script(
        spec.upstream_model, Behaviour(), Behaviour(kind="500"), Behaviour(), Behaviour()
    )
    ids = []
    for _ in range(4):
        response = await client.post(
            "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
        )
        ids.append(response.headers["x-request-id"])
    rows = {r.request_id: r for r in await rows_for(runtime, tenant_a) if r.model == spec.name}
    assert set(rows) == set(ids)
    assert [rows[i].status for i in ids] == ["ok", "error", "ok", "ok"]
    async with runtime.db.platform() as session:
        daily = (
            await session.execute(
                select(UsageDaily).where(
                    UsageDaily.tenant_id == tenant_a.id, UsageDaily.model == spec.name
                )
            )
        ).scalar_one()
    assert (daily.requests, daily.errors, daily.prompt_tokens, daily.completion_tokens) == (
        4,
        1,
        60,
        21,
    )
    assert daily.cost_usd == 3 * cost(20, 7)
    usage = (await client.get("/api/v1/admin/usage", headers=tenant_a.owner)).json()
    assert Decimal(usage["totals"]["cost_usd"]) >= 3 * cost(20, 7)
    assert any(d["model"] == spec.name and d["requests"] == 4 for d in usage["daily"])
    events = (await client.get("/api/v1/admin/usage/events", headers=tenant_a.owner)).json()
    assert {e["request_id"] for e in events["items"]} >= set(ids)
    stats = (await client.get("/api/v1/admin/stats", headers=tenant_a.owner)).json()
    assert stats["requests"] >= 4
    assert (await client.get("/api/v1/admin/usage", headers=tenant_a.member)).status_code == 403


async def test_prompt_logs_only_where_the_tenant_allows(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    platform_admin: Any,
) -> None:
    await client.patch(
        f"/api/v1/tenants/{tenant_a.id}",
        json={"settings": {"log_prompts": True, "prompt_log_retention_days": 7}},
        headers=platform_admin.headers,
    )
    logged = await client.post(
        "/api/v1/chat/",
        json={"message": "remember me", "model": "extractive"},
        headers=tenant_a.owner,
    )
    unlogged = await client.post(
        "/api/v1/chat/",
        json={"message": "forget me", "model": "extractive"},
        headers=tenant_b.owner,
    )
    await usage_row(runtime, logged.json()["request_id"])
    await usage_row(runtime, unlogged.json()["request_id"])
    async with runtime.db.platform() as session:
        rows = list((await session.execute(select(PromptLog))).scalars())
    by_id = {r.request_id: r for r in rows}
    assert unlogged.json()["request_id"] not in by_id
    entry = by_id[logged.json()["request_id"]]
    assert entry.prompt[-1] == {"role": "user", "content": "remember me"}
    assert entry.response == logged.json()["response"]
    assert (entry.expires_at - entry.created_at).days == 7
    page = (await client.get("/api/v1/admin/prompt-logs", headers=tenant_a.owner)).json()
    assert page["items"][0]["request_id"] == logged.json()["request_id"]
    assert (await client.get("/api/v1/admin/prompt-logs", headers=tenant_b.owner)).json()[
        "items"
    ] == []


async def test_local_model_answers_a_real_prompt(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    from mtai.services.catalog import ModelDefinition

    await runtime.catalog.put_model(
        None,
        ModelDefinition(
            name="local-gemma",
            provider="local",
            upstream_model="gemma-3-270m",
            context_window=2048,
            max_output_tokens=256,
            input_price_per_1m=Decimal(0),
            output_price_per_1m=Decimal(0),
            timeout_seconds=120,
            max_retries=0,
        ),
    )
    response = await client.post(
        "/api/v1/chat/",
        json={
            "message": "What is the capital of France?",
            "model": "local-gemma",
            "max_tokens": 24,
            "temperature": 0,
        },
        headers=tenant_a.member,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "Paris" in body["response"]
    assert body["tokens_used"]["completion"] > 0
    streamed = await client.post(
        "/api/v1/chat/",
        json={
            "message": "What is the capital of France?",
            "model": "local-gemma",
            "max_tokens": 24,
            "temperature": 0,
            "stream": True,
        },
        headers=tenant_a.member,
    )
    deltas = "".join(d["text"] for n, d in parse_sse(streamed.text) if n == "delta")
    assert "Paris" in deltas


async def test_overhead_header_excludes_upstream_time(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(spec.upstream_model, Behaviour(), Behaviour(kind="slow", delay=0.6))
    warm = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
    )
    assert warm.status_code == 200  # caches filled: what follows is the steady state
    response = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
    )
    assert response.status_code == 200
    assert response.json()["latency_ms"] >= 600
    assert float(response.headers["x-mtai-overhead-ms"]) < 300


async def test_models_file_loads_into_the_catalog(runtime: Runtime, tmp_path: Any) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[[models]]\nname = "file-model"\nprovider = "openai"\nupstream_model = "m"\n'
        'base_url = "http://127.0.0.1:9/v1"\ncontext_window = 1000\nmax_output_tokens = 100\n'
        "input_price_per_1m = 1.5\noutput_price_per_1m = 2\nenabled = false\n"
    )
    assert await runtime.catalog.load_file(path) == ["file-model"]
    spec = (await runtime.catalog.models())["file-model"]
    assert (spec.input_price_per_1m, spec.enabled) == (Decimal("1.5"), False)
    path.write_text('[[models]]\nname = "bad"\nprovider = "nope"\n')
    with pytest.raises(ConfigurationError, match="MTAI_MODELS_FILE"):
        await runtime.catalog.load_file(path)
