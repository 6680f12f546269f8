"""One contract, two stores: real Redis and the in-process store behave the same."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from mtai.providers.limits.base import Check, LimitStore, Settlement
from mtai.providers.limits.memory import MemoryLimitStore
from mtai.providers.limits.redis_store import RedisLimitStore, connect


@pytest.fixture(params=["redis", "memory"])
async def store(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[LimitStore]:
    if request.param == "memory":
        yield MemoryLimitStore()
        return
    redis_store = RedisLimitStore(connect(redis_url))
    yield redis_store
    await redis_store.aclose()


def key() -> str:
    return f"mtai:test:{{{uuid.uuid4().hex}}}"


def member() -> str:
    return uuid.uuid4().hex


async def test_sliding_window_counts_and_expires(store: LimitStore) -> None:
    check = Check("window", key(), limit=5, amount=1, span_ms=400, name="rpm")
    results = [await store.admit([check], member()) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    refused = results[-1]
    assert refused.failed == check
    assert refused.used == 5
    assert 0 < refused.retry_after_ms <= 400
    assert (await store.usage(check)).used == 5
    await asyncio.sleep(0.45)
    assert (await store.admit([check], member())).allowed
    assert (await store.usage(check)).used == 1


async def test_weighted_window_settles_to_actual_weight(store: LimitStore) -> None:
    check = Check("window", key(), limit=1000, amount=600, span_ms=60_000, name="tpm")
    first = member()
    assert (await store.admit([check], first)).allowed
    assert not (await store.admit([check], member())).allowed  # 600 + 600 > 1000
    await store.settle([Settlement("window", check.key, 150)], first)  # it used only 150
    assert (await store.usage(check)).used == 150
    assert (await store.admit([check], member())).allowed


async def test_concurrency_slots_release_and_lease_expiry(store: LimitStore) -> None:
    check = Check("slots", key(), limit=2, amount=1, span_ms=300, name="concurrency")
    a, b = member(), member()
    assert (await store.admit([check], a)).allowed
    assert (await store.admit([check], b)).allowed
    assert not (await store.admit([check], member())).allowed
    await store.settle([Settlement("slots", check.key, 0)], a)
    assert (await store.admit([check], member())).allowed
    await asyncio.sleep(0.35)  # leases of crashed requests run out
    assert (await store.usage(check)).used == 0


async def test_budget_seed_reserve_settle_and_expiry(store: LimitStore) -> None:
    check = Check("budget", key(), limit=100, amount=40, span_ms=300, name="monthly_usd")
    unseeded = await store.admit([check], member())
    assert not unseeded.allowed
    assert unseeded.needs_seed == check.key
    await store.seed(check.key, 10, 60_000)
    await store.seed(check.key, 99, 60_000)  # a second seed never overwrites
    first, second = member(), member()
    assert (await store.admit([check], first)).allowed  # 10 + 40
    assert (await store.admit([check], second)).allowed  # 10 + 80
    refused = await store.admit([check], member())
    assert not refused.allowed
    assert refused.used == 90
    await store.settle([Settlement("budget", check.key, 5)], first)  # actual cost 5
    usage = await store.usage(check)
    assert (usage.used, usage.reserved) == (15, 40)
    await asyncio.sleep(0.35)  # `second` crashed: its reservation lapses
    usage = await store.usage(check)
    assert (usage.used, usage.reserved) == (15, 0)
    await store.settle([Settlement("budget", check.key, 7)], second)  # a late settle still counts
    assert (await store.usage(check)).used == 22


async def test_all_checks_or_none(store: LimitStore) -> None:
    roomy = Check("window", key(), limit=100, amount=1, span_ms=60_000, name="tenant rpm")
    tight = Check("slots", key(), limit=1, amount=1, span_ms=60_000, name="key concurrency")
    assert (await store.admit([roomy, tight], member())).allowed
    refused = await store.admit([roomy, tight], member())
    assert refused.failed == tight
    assert (await store.usage(roomy)).used == 1  # the refused request took nothing


@pytest.mark.parametrize("kind", ["window", "budget", "slots"])
async def test_200_concurrent_requests_against_room_for_50(store: LimitStore, kind: str) -> None:
    if kind == "budget":
        check = Check("budget", key(), limit=50 * 7, amount=7, span_ms=60_000, name="budget")
        await store.seed(check.key, 0, 60_000)
    elif kind == "window":
        check = Check("window", key(), limit=50, amount=1, span_ms=60_000, name="rpm")
    else:
        check = Check("slots", key(), limit=50, amount=1, span_ms=60_000, name="concurrency")
    results = await asyncio.gather(*(store.admit([check], member()) for _ in range(200)))
    assert sum(r.allowed for r in results) == 50
    usage = await store.usage(check)
    assert usage.used + usage.reserved == 50 * check.amount
