"""Finding 8: the budget reservation covers the whole fallback chain, not only the primary.

The attack: a long conversation sent to a primary with a small context window whose fallback has
a large one. The primary's reservation (history trimmed to its window, its small output limit)
fits the budget; the primary fails and the fallback reads the whole history and writes its own,
much larger, output: one admitted request spends many times what it reserved.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
from sqlalchemy import func, select

from mtai.db.models import UsageEvent
from mtai.runtime import Runtime
from tests.conftest import AdminFixture, TenantFixture, add_model
from tests.support.fake_upstreams import Behaviour, FakeUpstream

PRICE = Decimal(1000)  # $1 per 1,000 tokens, in and out


async def test_fallback_with_a_larger_window_cannot_overspend_the_budget(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    platform_admin: AdminFixture,
) -> None:
    fallback = await add_model(
        runtime,
        fake_upstream,
        "openai",
        context_window=200_000,
        max_output_tokens=20_000,
        input_price_per_1m=PRICE,
        output_price_per_1m=PRICE,
        max_retries=0,
    )
    primary = await add_model(
        runtime,
        fake_upstream,
        "openai",
        context_window=1_000,
        max_output_tokens=50,
        input_price_per_1m=PRICE,
        output_price_per_1m=PRICE,
        max_retries=0,
        fallbacks=[fallback.name],
    )
    fake_upstream.script(primary.upstream_model, Behaviour(kind="500"))
    # What the fallback really reads and writes: the whole history and its own output limit.
    fake_upstream.script(
        fallback.upstream_model, Behaviour(prompt_tokens=60_000, completion_tokens=20_000)
    )
    budget = Decimal(2)  # the primary's worst case is about $1; the fallback's about $80
    put = await client.put(
        f"/api/v1/tenants/{tenant_a.id}/limits",
        json={"monthly_usd": str(budget)},
        headers=platform_admin.headers,
    )
    assert put.status_code == 200, put.text
    history = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": "lorem ipsum dolor " * 400}
        for n in range(40)
    ]
    response = await client.post(
        "/v1/chat/completions",
        json={"model": primary.name, "messages": [*history, {"role": "user", "content": "Go."}]},
        headers=tenant_a.api_key,
    )
    await runtime.ledger.drain()
    async with runtime.db.platform() as session:
        spent = (
            await session.execute(
                select(func.coalesce(func.sum(UsageEvent.cost_usd), 0)).where(
                    UsageEvent.tenant_id == tenant_a.id
                )
            )
        ).scalar_one()
    assert spent <= budget, f"one request spent ${spent} of a ${budget} budget"
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "budget_exceeded"
    assert fake_upstream.count(primary.upstream_model) == 0
    assert fake_upstream.count(fallback.upstream_model) == 0


async def test_a_chain_within_the_budget_is_admitted_and_settled(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    platform_admin: AdminFixture,
) -> None:
    """The reservation is the chain's worst case; settling keeps only what was really used."""
    fallback = await add_model(
        runtime, fake_upstream, "openai", context_window=4_000, max_output_tokens=100
    )
    primary = await add_model(
        runtime,
        fake_upstream,
        "openai",
        context_window=1_000,
        max_output_tokens=50,
        max_retries=0,
        fallbacks=[fallback.name],
    )
    fake_upstream.script(primary.upstream_model, Behaviour(kind="500"))
    fake_upstream.script(fallback.upstream_model, Behaviour(prompt_tokens=30, completion_tokens=9))
    await client.put(
        f"/api/v1/tenants/{tenant_a.id}/limits",
        json={"monthly_tokens": 10_000},
        headers=platform_admin.headers,
    )
    response = await client.post(
        "/v1/chat/completions",
        json={"model": primary.name, "messages": [{"role": "user", "content": "hi"}]},
        headers=tenant_a.api_key,
    )
    assert response.status_code == 200, response.text
    view = (await client.get("/api/v1/limits", headers=tenant_a.owner)).json()
    assert view["consumption"]["monthly_tokens"] == {"spent": 39, "reserved": 0}
