"""Finding 12 (usage): negative upstream usage is never a refund, and spool files are 0600.

The attacks: an upstream (a tenant's own base URL, or a broken proxy) reports negative token
counts, and the ledger records a negative cost that refunds the budget; the usage spool, which
holds prompts when prompt logging is on, is readable by every local user.
"""

from __future__ import annotations

import asyncio
import stat
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from mtai.db.models import UsageEvent
from mtai.runtime import Runtime
from tests.conftest import AdminFixture, TenantFixture, add_model
from tests.support.fake_upstreams import Behaviour, FakeUpstream


async def test_negative_upstream_usage_is_not_a_refund(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    platform_admin: AdminFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(prompt_tokens=-1_000_000, completion_tokens=-1_000_000),
        Behaviour(prompt_tokens=5, completion_tokens=-3),
    )
    await client.put(
        f"/api/v1/tenants/{tenant_a.id}/limits",
        json={"monthly_usd": "100"},
        headers=platform_admin.headers,
    )
    for _ in range(2):
        response = await client.post(
            "/api/v1/chat/",
            json={"message": "hi", "model": spec.name, "max_tokens": 5},
            headers=tenant_a.api_key,
        )
        assert response.status_code in (200, 502), response.text
        if response.status_code == 200:
            assert response.json()["cost_usd"] >= "0"
            assert response.json()["tokens_used"]["prompt"] >= 0
            assert response.json()["tokens_used"]["completion"] >= 0
    await runtime.ledger.drain()
    async with runtime.db.platform() as session:
        rows = list(
            (
                await session.execute(select(UsageEvent).where(UsageEvent.tenant_id == tenant_a.id))
            ).scalars()
        )
    assert len(rows) == 2
    for row in rows:
        assert row.cost_usd >= 0
        assert row.prompt_tokens >= 0
        assert row.completion_tokens >= 0
    view = (await client.get("/api/v1/limits", headers=tenant_a.owner)).json()
    assert Decimal(view["consumption"]["monthly_usd"]["spent"]) >= 0


async def test_spool_files_are_private(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    response = await client.post(
        "/api/v1/chat/",
        json={"message": "secret plans", "model": "extractive"},
        headers=tenant_a.owner,
    )
    assert response.status_code == 200
    modes = await asyncio.to_thread(_modes, Path(runtime.ledger.spool_dir))
    assert modes["files"]
    assert set(modes["files"]) == {0o600}, modes
    assert modes["dir"] & 0o077 == 0


def _modes(spool: Path) -> dict[str, Any]:
    return {
        "files": [stat.S_IMODE(p.stat().st_mode) for p in spool.glob("*.jsonl")],
        "dir": stat.S_IMODE(spool.stat().st_mode),
    }
