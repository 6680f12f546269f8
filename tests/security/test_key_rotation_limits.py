"""Finding 12 (rotation): rotating a key keeps its limits and carries its month's spend.

The attack: a key at the end of its monthly budget (or with a tight rpm) is rotated, and the new
key comes out unlimited, or with a fresh month's budget.
"""

from __future__ import annotations

import httpx

from mtai.runtime import Runtime
from tests.conftest import TenantFixture, add_model
from tests.support.fake_upstreams import Behaviour, FakeUpstream

LIMITS = {"rpm": 50, "monthly_tokens": 100}


async def test_rotated_key_keeps_limits_and_this_months_spend(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    fake_upstream.script(
        spec.upstream_model, *[Behaviour(prompt_tokens=30, completion_tokens=10)] * 4
    )
    created = await client.post(
        "/api/v1/keys", json={"name": "app", "scopes": ["chat"]}, headers=tenant_a.owner
    )
    assert created.status_code == 201, created.text
    old_id, old_key = created.json()["id"], created.json()["key"]
    put = await client.put(f"/api/v1/keys/{old_id}/limits", json=LIMITS, headers=tenant_a.owner)
    assert put.status_code == 200, put.text

    async def chat(key: str) -> httpx.Response:
        return await client.post(
            "/api/v1/chat/",
            json={"message": "hi", "model": spec.name, "max_tokens": 5},
            headers={"X-API-Key": key},
        )

    spent = await chat(old_key)
    assert spent.status_code == 200, spent.text
    await runtime.ledger.drain()

    rotated = await client.post(f"/api/v1/keys/{old_id}/rotate", headers=tenant_a.owner)
    assert rotated.status_code == 201, rotated.text
    new_id, new_key = rotated.json()["id"], rotated.json()["key"]
    view = (await client.get(f"/api/v1/keys/{new_id}/limits", headers=tenant_a.owner)).json()
    assert {k: v for k, v in view["limits"].items() if v is not None} == LIMITS
    assert view["consumption"]["monthly_tokens"] == {"spent": 40, "reserved": 0}

    assert (await chat(new_key)).status_code == 200
    refused = await chat(new_key)  # 80 spent: the worst case of another no longer fits
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "budget_exceeded"
