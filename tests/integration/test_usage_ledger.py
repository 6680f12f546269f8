"""The usage hand-off survives a crash and is idempotent on request id."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import select

from mtai.db.models import UsageDaily, UsageEvent
from mtai.runtime import Runtime
from mtai.services.principal import operator
from mtai.services.usage import UsageRecord
from tests.conftest import TenantFixture, make_tenant

CRASHER = textwrap.dedent(
    """
    import os, sys, uuid
    from datetime import UTC, datetime
    from decimal import Decimal
    from pathlib import Path
    from mtai.db.engine import Database
    from mtai.services.usage import UsageLedger, UsageRecord

    spool, tenant, model = Path(sys.argv[1]), uuid.UUID(sys.argv[2]), sys.argv[3]
    ledger = UsageLedger(Database("postgresql://unused@127.0.0.1:1/x", app_role="mtai_app"), spool)
    for n in range(3):
        ledger.record(UsageRecord(
            request_id=f"{model}-{n}", tenant_id=tenant, user_id=None, api_key_id=None,
            model=model, provider="openai", prompt_tokens=100, completion_tokens=10,
            cost_usd=Decimal("0.000450"), latency_ms=12, ttft_ms=5, status="ok",
            error_code=None, api="openai", created_at=datetime.now(UTC),
        ))
    os._exit(9)  # a crash: no drain, no close, no atexit
    """
)


def crash_after_recording(spool: Path, tenant: TenantFixture, model: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CRASHER, str(spool), str(tenant.id), model],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 9, result.stderr


async def events_for(runtime: Runtime, model: str) -> list[UsageEvent]:
    async with runtime.db.platform() as session:
        result = await session.execute(select(UsageEvent).where(UsageEvent.model == model))
        return list(result.scalars())


async def test_records_of_a_crashed_process_are_drained_once(
    runtime: Runtime, tenant_a: TenantFixture
) -> None:
    model = f"crash-{uuid.uuid4().hex[:6]}"
    spool = runtime.ledger.spool_dir
    crash_after_recording(spool, tenant_a, model)
    leftovers = [p for p in spool.glob("*.jsonl") if p.stat().st_size > 0]
    assert leftovers, "the crashed process left its spool behind"
    copy = leftovers[0].read_text()

    await runtime.ledger.drain()
    rows = await events_for(runtime, model)
    assert sorted(r.request_id for r in rows) == [f"{model}-0", f"{model}-1", f"{model}-2"]

    # The same records handed over again (a redelivery) change nothing.
    (spool / "spool-999999999-replay.jsonl").write_text(copy + '{"request_id": "torn')
    await runtime.ledger.drain()
    assert len(await events_for(runtime, model)) == 3
    async with runtime.db.platform() as session:
        daily = (
            await session.execute(select(UsageDaily).where(UsageDaily.model == model))
        ).scalar_one()
    assert (daily.requests, daily.prompt_tokens, daily.completion_tokens) == (3, 300, 30)
    assert not list(spool.glob("*999999999*"))


async def test_prompt_logs_past_their_retention_are_purged(
    runtime: Runtime, tenant_a: TenantFixture
) -> None:
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from mtai.db.models import PromptLog
    from mtai.services.usage import PromptLogEntry, UsageRecord

    def record(request_id: str, age_days: int) -> UsageRecord:
        return UsageRecord(
            request_id=request_id,
            tenant_id=tenant_a.id,
            user_id=None,
            api_key_id=None,
            model="m",
            provider="openai",
            prompt_tokens=1,
            completion_tokens=1,
            cost_usd=Decimal(0),
            latency_ms=1,
            ttft_ms=None,
            status="ok",
            error_code=None,
            api="native",
            created_at=datetime.now(UTC) - timedelta(days=age_days),
            prompt_log=PromptLogEntry(
                prompt=[{"role": "user", "content": "q"}], response="a", retention_days=2
            ),
        )

    old, fresh = f"old-{uuid.uuid4().hex[:6]}", f"fresh-{uuid.uuid4().hex[:6]}"
    runtime.ledger.record(record(old, 3))
    runtime.ledger.record(record(fresh, 1))
    await runtime.ledger.drain()
    async with runtime.db.platform() as session:
        kept = {r.request_id for r in (await session.execute(select(PromptLog))).scalars()}
        assert await session.get(UsageEvent, (tenant_a.id, old)) is not None  # the row stays
    assert fresh in kept
    assert old not in kept


async def test_usage_of_a_deleted_tenant_does_not_hold_back_the_others(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    """A tenant deleted while its usage is spooled: its rows are dropped, the rest land."""
    doomed = await make_tenant(client, runtime)
    model = f"gone-{uuid.uuid4().hex[:6]}"
    for n, tenant_id in enumerate((doomed.id, tenant_a.id)):
        runtime.ledger.record(
            UsageRecord(
                request_id=f"{model}-{n}",
                tenant_id=tenant_id,
                user_id=None,
                api_key_id=None,
                model=model,
                provider="openai",
                prompt_tokens=10,
                completion_tokens=1,
                cost_usd=Decimal("0.0001"),
                latency_ms=1,
                ttft_ms=None,
                status="ok",
                error_code=None,
                api="openai",
                created_at=datetime.now(UTC),
            )
        )
    await runtime.tenants.delete(operator(), doomed.id)
    await runtime.ledger.drain()
    rows = await events_for(runtime, model)
    assert [(r.tenant_id, r.request_id) for r in rows] == [(tenant_a.id, f"{model}-1")]
