"""Issue 16's catalog and ledger fields: prompt-cache prices, capability flags and drop_params
in the catalog; cached, reasoning and tool-call counts in the usage ledger; the answer's tool
calls in prompt logs; migration 0012 both ways."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from mtai.db.engine import async_url
from mtai.db.migrate import alembic_config
from mtai.db.models import PromptLog, UsageDaily, UsageEvent
from mtai.db.repositories import tenant_rows
from mtai.providers.llm.capabilities import MODEL_FLAGS, Support
from mtai.providers.llm.conversation import Usage
from mtai.providers.llm.registry import SUPPORT_BY_PROVIDER
from mtai.runtime import Runtime
from mtai.services.catalog import ModelSpec
from mtai.services.model_capabilities import CARRIERS
from mtai.services.usage import PromptLogEntry, UsageRecord
from tests.conftest import AdminFixture, TenantFixture, add_model
from tests.support.fake_upstreams import Behaviour, FakeUpstream
from tests.support.postgres import fresh_database


def definition(fake: FakeUpstream, name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai",
        "upstream_model": "up-parity",
        "base_url": f"{fake.base_url}/v1",
        "context_window": 8192,
        "max_output_tokens": 1024,
        "input_price_per_1m": "3.000000",
        "output_price_per_1m": "15.000000",
        **overrides,
    }


async def test_cache_prices_and_flags_round_trip_through_the_models_api(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    platform_admin: AdminFixture,
    tenant_a: TenantFixture,
) -> None:
    name = f"parity-{secrets.token_hex(3)}"
    body = definition(
        fake_upstream,
        name,
        cached_input_price_per_1m="0.300000",
        cache_write_price_per_1m="3.750000",
        capabilities={"tools": False, "vision": True},
        drop_params=True,
    )
    put = await client.put(
        f"/api/v1/admin/models/{name}", json=body, headers=platform_admin.headers
    )
    assert put.status_code == 200, put.text
    shown = put.json()
    assert Decimal(shown["cached_input_price_per_1m"]) == Decimal("0.3")
    assert Decimal(shown["cache_write_price_per_1m"]) == Decimal("3.75")
    assert shown["capabilities"] == {"tools": False, "vision": True}
    assert shown["drop_params"] is True

    listed = await client.get("/api/v1/admin/models", headers=platform_admin.headers)
    (again,) = [m for m in listed.json() if m["name"] == name]
    assert again == shown
    spec = (await runtime.catalog.models())[name]
    assert spec.cached_input_price_per_1m == Decimal("0.3")
    assert spec.cache_write_price_per_1m == Decimal("3.75")
    assert dict(spec.capabilities) == {"tools": False, "vision": True}
    assert spec.drop_params is True

    # Tenants see the effective flags: the catalog's, as far as the provider carries them.
    openai = SUPPORT_BY_PROVIDER["openai"]
    carried = {
        flag: any(openai[f] is not Support.REFUSED for f in CARRIERS[flag]) for flag in MODEL_FLAGS
    }
    models = await client.get("/api/v1/chat/models", headers=tenant_a.member)
    (mine,) = [m for m in models.json() if m["name"] == name]
    assert mine["capabilities"] == {
        "tools": False,
        "vision": carried["vision"],
        "json_schema": carried["json_schema"],
    }
    # The extractive answerer's provider refuses tools and images whatever the catalog says.
    (extractive,) = [m for m in models.json() if m["name"] == "extractive"]
    assert extractive["capabilities"]["tools"] is False
    assert extractive["capabilities"]["vision"] is False

    # A replace without the new fields resets them: no cache prices, every flag, no dropping.
    plain = await client.put(
        f"/api/v1/admin/models/{name}",
        json=definition(fake_upstream, name),
        headers=platform_admin.headers,
    )
    assert plain.status_code == 200, plain.text
    assert plain.json()["cached_input_price_per_1m"] is None
    assert plain.json()["capabilities"] == {}
    assert plain.json()["drop_params"] is False


async def test_bad_catalog_fields_are_refused(
    client: httpx.AsyncClient,
    fake_upstream: FakeUpstream,
    platform_admin: AdminFixture,
    tenant_a: TenantFixture,
) -> None:
    name = f"parity-bad-{secrets.token_hex(3)}"
    bad: list[dict[str, Any]] = [
        {"capabilities": {"tools": True, "telepathy": True}},
        {"capabilities": {"__proto__": False}},
        {"capabilities": {"tools": "yes"}},
        {"capabilities": {"vision": 1}},
        {"capabilities": {"vision": None}},
        {"capabilities": ["tools"]},
        {"capabilities": {"tools": {"nested": True}}},
        {"cached_input_price_per_1m": "-0.1"},
        {"cache_write_price_per_1m": "0.0000001"},
        {"cache_write_price_per_1m": "100001"},
        {"cached_input_price_per_1m": "NaN"},
        {"drop_params": "sometimes"},
    ]
    for fields in bad:
        response = await client.put(
            f"/api/v1/admin/models/{name}",
            json=definition(fake_upstream, name, **fields),
            headers=platform_admin.headers,
        )
        assert response.status_code == 422, (fields, response.text)
    unknown = await client.put(
        f"/api/v1/admin/models/{name}",
        json=definition(fake_upstream, name, capabilities={"tools": True, "telepathy": True}),
        headers=platform_admin.headers,
    )
    assert "telepathy" in unknown.text
    # Tenant admins do not write the catalog.
    tenant_admin = await client.put(
        f"/api/v1/admin/models/{name}",
        json=definition(fake_upstream, name, drop_params=True),
        headers=tenant_a.owner,
    )
    assert tenant_admin.status_code == 403
    listed = await client.get("/api/v1/admin/models", headers=platform_admin.headers)
    assert name not in {m["name"] for m in listed.json()}


def spec(
    cached_input_price_per_1m: Decimal | None = None,
    cache_write_price_per_1m: Decimal | None = None,
) -> ModelSpec:
    return ModelSpec(
        name="m",
        provider="anthropic",
        upstream_model="m",
        base_url=None,
        region=None,
        api_key=None,
        context_window=1000,
        max_output_tokens=100,
        input_price_per_1m=Decimal("3.123457"),
        output_price_per_1m=Decimal("15.000001"),
        timeout_seconds=1,
        max_retries=0,
        fallbacks=(),
        enabled=True,
        cached_input_price_per_1m=cached_input_price_per_1m,
        cache_write_price_per_1m=cache_write_price_per_1m,
    )


def test_cost_prices_cache_reads_and_writes_exactly() -> None:
    usage = Usage(
        prompt_tokens=10_007,
        completion_tokens=503,
        cached_read_tokens=6_001,
        cached_write_tokens=2_003,
        reasoning_tokens=211,
    )
    priced = spec(
        cached_input_price_per_1m=Decimal("0.312346"),
        cache_write_price_per_1m=Decimal("3.904321"),
    )
    expected = (
        Decimal(10_007 - 6_001 - 2_003) * Decimal("3.123457")
        + Decimal(6_001) * Decimal("0.312346")
        + Decimal(2_003) * Decimal("3.904321")
        + Decimal(503) * Decimal("15.000001")
    ) / Decimal(1_000_000)
    assert priced.cost_of(usage) == expected
    assert priced.cost_of(usage) == Decimal("0.023496028183")  # nothing rounded
    # Without cache prices cached tokens cost the input price: the plain formula.
    assert spec().cost_of(usage) == spec().cost(10_007, 503)
    # A write priced, reads not: reads at the input price.
    half = spec(cache_write_price_per_1m=Decimal("3.904321"))
    assert half.cost_of(usage) == (
        Decimal(10_007 - 2_003) * Decimal("3.123457")
        + Decimal(2_003) * Decimal("3.904321")
        + Decimal(503) * Decimal("15.000001")
    ) / Decimal(1_000_000)


# Cached read, cached written, reasoning, as each protocol can report them (OpenAI reports
# no cache writes).
REPORTED = {"openai": (600, 0, 10), "anthropic": (600, 200, 0), "bedrock": (600, 200, 0)}


@pytest.mark.parametrize("provider", sorted(REPORTED))
async def test_a_chat_turn_is_priced_and_recorded_with_its_cache_use(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    provider: str,
) -> None:
    """Through the whole pipeline: the provider reports cache use, the catalog prices it, the
    ledger keeps it."""
    spec = await add_model(
        runtime,
        fake_upstream,
        provider,
        cached_input_price_per_1m=Decimal("0.3"),
        cache_write_price_per_1m=Decimal("3.75"),
    )
    read, written, reasoning = REPORTED[provider]
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(
            prompt_tokens=1_000,
            completion_tokens=50,
            cached_read_tokens=read,
            cached_write_tokens=written,
            reasoning_tokens=reasoning,
        ),
    )
    response = await client.post(
        "/api/v1/chat/", json={"message": "hello", "model": spec.name}, headers=tenant_a.member
    )
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    for _ in range(50):
        await runtime.ledger.drain()
        async with runtime.db.platform() as session:
            row = await session.get(UsageEvent, (tenant_a.id, request_id))
        if row is not None:
            break
        await asyncio.sleep(0.05)
    assert row is not None
    usage = Usage(1_000, 50, read, written, reasoning)
    assert (row.prompt_tokens, row.completion_tokens) == (1_000, 50)
    assert (row.cached_read_tokens, row.cached_write_tokens, row.reasoning_tokens) == (
        read,
        written,
        reasoning,
    )
    assert row.cost_usd == spec.cost_of(usage) < spec.cost(1_000, 50)
    assert Decimal(response.json()["cost_usd"]) == spec.cost_of(usage)


def record(tenant: TenantFixture, model: str, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "tenant_id": tenant.id,
        "user_id": None,
        "api_key_id": tenant.key_id,
        "model": model,
        "provider": "anthropic",
        "prompt_tokens": 1_000,
        "completion_tokens": 100,
        "cost_usd": Decimal("0.0042"),
        "latency_ms": 10,
        "ttft_ms": 3,
        "status": "ok",
        "error_code": None,
        "api": "anthropic",
        "created_at": datetime.now(UTC),
        **fields,
    }
    return UsageRecord(**values)


async def event(runtime: Runtime, tenant: TenantFixture, request_id: str) -> UsageEvent:
    async with runtime.db.platform() as session:
        row = await session.get(UsageEvent, (tenant.id, request_id))
    assert row is not None, f"no usage row for {request_id}"
    return row


async def prompt_log(runtime: Runtime, tenant: TenantFixture, request_id: str) -> PromptLog:
    async with runtime.db.platform() as session:
        row = await session.get(PromptLog, (tenant.id, request_id))
    assert row is not None, f"no prompt log for {request_id}"
    return row


async def test_ledger_keeps_cache_reasoning_and_tool_calls(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    model = f"ledger-{secrets.token_hex(3)}"
    calls = [
        {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"id": "call_2", "name": "get_time", "arguments": "{}"},
    ]
    prompt = [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": [{"type": "tool_call", "id": "c0", "name": "x"}]},
    ]
    first = record(
        tenant_a,
        model,
        cached_read_tokens=600,
        cached_write_tokens=200,
        reasoning_tokens=40,
        tool_calls=2,
        end_user="customer-42",
        prompt_log=PromptLogEntry(prompt=prompt, response="", retention_days=7, tool_calls=calls),
    )
    second = record(tenant_a, model, cached_read_tokens=100, reasoning_tokens=5)
    runtime.ledger.record(first)
    runtime.ledger.record(second)
    await runtime.ledger.drain()

    row = await event(runtime, tenant_a, first.request_id)
    assert (row.cached_read_tokens, row.cached_write_tokens) == (600, 200)
    assert (row.reasoning_tokens, row.tool_calls, row.end_user) == (40, 2, "customer-42")
    other = await event(runtime, tenant_a, second.request_id)
    assert (other.cached_read_tokens, other.cached_write_tokens, other.tool_calls) == (100, 0, 0)
    assert other.end_user is None
    logged = await prompt_log(runtime, tenant_a, first.request_id)
    assert logged.tool_calls == calls
    assert logged.prompt == prompt
    async with runtime.db.platform() as session:
        day = await session.get(UsageDaily, (tenant_a.id, first.created_at.date(), model))
    assert day is not None
    assert (day.cached_read_tokens, day.cached_write_tokens, day.reasoning_tokens) == (700, 200, 45)

    # What the tenant's admins read.
    report = (await client.get("/api/v1/admin/usage", headers=tenant_a.owner)).json()
    (daily,) = [d for d in report["daily"] if d["model"] == model]
    assert (daily["cached_read_tokens"], daily["cached_write_tokens"]) == (700, 200)
    assert daily["reasoning_tokens"] == 45
    totals = report["totals"]
    assert (totals["cached_read_tokens"], totals["reasoning_tokens"]) == (700, 45)
    stats = (await client.get("/api/v1/admin/stats", headers=tenant_a.owner)).json()
    assert stats["cached_write_tokens"] == 200
    events = (await client.get("/api/v1/admin/usage/events", headers=tenant_a.owner)).json()
    (shown,) = [e for e in events["items"] if e["request_id"] == first.request_id]
    assert shown["tool_calls"] == 2
    assert shown["end_user"] == "customer-42"
    assert (shown["cached_read_tokens"], shown["reasoning_tokens"]) == (600, 40)
    logs = (await client.get("/api/v1/admin/prompt-logs", headers=tenant_a.owner)).json()
    (log,) = [entry for entry in logs["items"] if entry["request_id"] == first.request_id]
    assert log["tool_calls"] == calls

    # The tenant archive carries the new columns (export copies whole rows, as the database
    # renders them).
    async with runtime.db.tenant(tenant_a.id) as session:
        archived = [
            r
            async for r in tenant_rows.tenant_rows(session, "usage_events", tenant_a.id)
            if r["request_id"] == first.request_id
        ]
        archived_logs = [
            r
            async for r in tenant_rows.tenant_rows(session, "prompt_logs", tenant_a.id)
            if r["request_id"] == first.request_id
        ]
    assert archived[0]["tool_calls"] == 2
    assert archived[0]["end_user"] == "customer-42"
    assert archived[0]["cached_write_tokens"] == 200
    assert archived_logs[0]["tool_calls"] == calls


async def test_hostile_values_do_not_hold_back_the_drain(
    runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    """A caller's `user` and a (tenant-chosen) upstream's usage and tool calls can hold
    anything; one such record must not fail the batch every other tenant's usage is in."""
    model = f"hostile-{secrets.token_hex(3)}"
    odd = record(
        tenant_a,
        model,
        prompt_tokens=10**12,
        cached_read_tokens=10**15,
        cached_write_tokens=-5,
        reasoning_tokens=2**40,
        tool_calls=1,
        end_user="u\x00" + "\ud800" + "x" * 5_000,
        prompt_log=PromptLogEntry(
            prompt=[{"role": "user", "content": "nul \x00 and \udfff"}],
            response="a\x00b",
            retention_days=1,
            tool_calls=[{"id": "c\x00", "name": "f", "arguments": '{"a": "\ud83d"}'}],
        ),
    )
    normal = record(tenant_b, model)
    runtime.ledger.record(odd)
    runtime.ledger.record(normal)
    await runtime.ledger.drain()

    assert (await event(runtime, tenant_b, normal.request_id)).prompt_tokens == 1_000
    row = await event(runtime, tenant_a, odd.request_id)
    assert row.prompt_tokens == row.cached_read_tokens == row.reasoning_tokens == 2**31 - 1
    assert row.cached_write_tokens == 0
    assert row.end_user is not None
    assert len(row.end_user) == 256
    assert row.end_user.startswith("u?x")
    logged = await prompt_log(runtime, tenant_a, odd.request_id)
    assert logged.response == "ab"
    assert logged.tool_calls == [{"id": "c", "name": "f", "arguments": '{"a": "?"}'}]
    assert logged.prompt == [{"role": "user", "content": "nul  and ?"}]


async def test_a_record_spooled_by_the_previous_version_still_drains(
    runtime: Runtime, tenant_a: TenantFixture
) -> None:
    """Spool files outlive upgrades: lines without the new keys land with their defaults."""
    request_id = f"old-{uuid.uuid4().hex}"
    line = {
        "request_id": request_id,
        "tenant_id": str(tenant_a.id),
        "user_id": None,
        "api_key_id": str(tenant_a.key_id),
        "model": "previous-version",
        "provider": "openai",
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "cost_usd": "0.000081",
        "latency_ms": 7,
        "ttft_ms": None,
        "status": "ok",
        "error_code": None,
        "api": "openai",
        "created_at": datetime.now(UTC).isoformat(),
        "cached": False,
        "prompt_log": {
            "prompt": [{"role": "user", "content": "hi"}],
            "response": "hello",
            "retention_days": 3,
        },
        "client_request_id": "client-1",
    }
    # A process that died (no such pid) left it behind.
    spool = runtime.ledger.spool_dir / "spool-999999998-previous.jsonl"
    spool.write_text(json.dumps(line) + "\n")
    await runtime.ledger.drain()

    assert not spool.exists()
    row = await event(runtime, tenant_a, request_id)
    assert (row.prompt_tokens, row.cached_read_tokens, row.cached_write_tokens) == (12, 0, 0)
    assert (row.reasoning_tokens, row.tool_calls, row.end_user) == (0, 0, None)
    logged = await prompt_log(runtime, tenant_a, request_id)
    assert (logged.response, logged.tool_calls) == ("hello", [])


_COLUMNS = text(
    "SELECT table_name || '.' || column_name FROM information_schema.columns "
    "WHERE table_schema = 'public' AND table_name IN "
    "('models', 'usage_events', 'usage_daily', 'prompt_logs')"
)
NEW_COLUMNS = {
    "models.cached_input_price_per_1m",
    "models.cache_write_price_per_1m",
    "models.capabilities",
    "models.drop_params",
    "usage_events.cached_read_tokens",
    "usage_events.cached_write_tokens",
    "usage_events.reasoning_tokens",
    "usage_events.tool_calls",
    "usage_events.end_user",
    "usage_daily.cached_read_tokens",
    "usage_daily.cached_write_tokens",
    "usage_daily.reasoning_tokens",
    "prompt_logs.tool_calls",
}
# The app role reads the catalog but writes only the ledger (0011's grants, inherited).
_PRIVILEGES = text(
    "SELECT has_column_privilege('mtai_app', 'models', 'capabilities', 'SELECT'), "
    "has_column_privilege('mtai_app', 'models', 'capabilities', 'UPDATE'), "
    "has_column_privilege('mtai_app', 'models', 'drop_params', 'INSERT'), "
    "has_column_privilege('mtai_app', 'usage_events', 'tool_calls', 'INSERT'), "
    "has_column_privilege('mtai_app', 'prompt_logs', 'tool_calls', 'INSERT'), "
    "has_column_privilege('mtai_app', 'usage_daily', 'reasoning_tokens', 'UPDATE')"
)


async def _schema(url: str) -> tuple[str, set[str]]:
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).one()
            columns = {str(r[0]) for r in await conn.execute(_COLUMNS)}
    finally:
        await engine.dispose()
    return str(version[0]), columns


async def _privileges(url: str) -> tuple[Any, ...]:
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return tuple((await conn.execute(_PRIVILEGES)).one())
    finally:
        await engine.dispose()


async def _defaults_of_a_plain_insert(url: str) -> tuple[Any, ...]:
    """A catalog row written without the new columns (as by the previous version)."""
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO models (name, provider, upstream_model, context_window, "
                    "max_output_tokens, input_price_per_1m, output_price_per_1m, "
                    "timeout_seconds, max_retries) VALUES ('m', 'openai', 'm', 10, 10, 1, 1, 1, 0)"
                )
            )
            row = await conn.execute(
                text("SELECT capabilities, drop_params, cached_input_price_per_1m FROM models")
            )
            return tuple(row.one())
    finally:
        await engine.dispose()


async def test_migration_0012_upgrades_downgrades_and_upgrades_again(pg_admin_url: str) -> None:
    with fresh_database(pg_admin_url) as url:
        config = alembic_config(url, "mtai_app")
        await asyncio.to_thread(command.upgrade, config, "0012")
        version, columns = await _schema(url)
        assert version == "0012"
        assert columns >= NEW_COLUMNS
        assert await _privileges(url) == (True, False, False, True, True, True)
        assert await _defaults_of_a_plain_insert(url) == ({}, False, None)

        await asyncio.to_thread(command.downgrade, config, "0011")
        version, columns = await _schema(url)
        assert version == "0011"
        assert not NEW_COLUMNS & columns

        await asyncio.to_thread(command.upgrade, config, "0012")
        version, columns = await _schema(url)
        assert version == "0012"
        assert columns >= NEW_COLUMNS
        assert await _privileges(url) == (True, False, False, True, True, True)
