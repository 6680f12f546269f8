"""The login back-off stores: Redis (shared by every process) and in-process, one contract."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from mtai.providers.limits.backoff import (
    BackoffPolicy,
    BackoffStore,
    MemoryBackoffStore,
    RedisBackoffStore,
)
from mtai.providers.limits.redis_store import connect

POLICY = BackoffPolicy(free=2, base_ms=1000, max_ms=5000, memory_ms=60_000)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[BackoffStore]:
    if request.param == "memory":
        yield MemoryBackoffStore()
        return
    client = connect(redis_url)
    try:
        yield RedisBackoffStore(client)
    finally:
        await client.aclose()


def test_the_policy_doubles_after_the_free_failures_up_to_the_maximum() -> None:
    assert [POLICY.wait_after(n) for n in range(1, 8)] == [0, 0, 1000, 2000, 4000, 5000, 5000]
    assert POLICY.wait_after(10_000) == 5000  # no overflow however many failures


async def test_failures_back_off_and_a_success_forgets_them(store: BackoffStore) -> None:
    key = f"mtai:test:backoff:{{{secrets.token_hex(6)}}}"
    assert await store.wait_ms(key) == 0
    assert [await store.fail(key, POLICY) for _ in range(4)] == [0, 0, 1000, 2000]
    assert 1500 < await store.wait_ms(key) <= 2000
    other = f"mtai:test:backoff:{{{secrets.token_hex(6)}}}"
    assert await store.wait_ms(other) == 0  # another (email, address) is not affected
    await store.clear(key)
    assert await store.wait_ms(key) == 0
    assert await store.fail(key, POLICY) == 0


async def test_the_memory_store_stays_bounded() -> None:
    store = MemoryBackoffStore(max_keys=3)
    for n in range(10):
        await store.fail(f"k{n}", POLICY)
    assert len(store._keys) <= 3


async def test_one_turn_at_a_time_until_ended_or_lapsed(store: BackoffStore) -> None:
    key = f"mtai:test:turn:{{{secrets.token_hex(6)}}}"
    assert await store.take_turn(key, 60_000)
    assert not await store.take_turn(key, 60_000)  # an attempt is under way
    await store.end_turn(key)
    assert await store.take_turn(key, 1)
    await asyncio.sleep(0.05)
    assert await store.take_turn(key, 60_000)  # a dead process's turn lapses
