"""Failure back-off: each failure of a key after the free ones doubles the wait before the next try.

Used for logins, keyed by (email, client address): a stranger's wrong passwords slow down only
the stranger. The Redis store shares the state across processes (the clock is Redis's); the
in-process one serves embedded mode and Redis outages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mtai.providers.limits.base import LimitStoreUnavailable


@dataclass(frozen=True)
class BackoffPolicy:
    free: int  # failures without a wait
    base_ms: int  # the wait after the first failure beyond the free ones
    max_ms: int  # the longest wait
    memory_ms: int  # failures are forgotten after this long without a new one

    def wait_after(self, failures: int) -> int:
        if failures <= self.free:
            return 0
        exponent = min(failures - self.free - 1, 40)  # 2**40 ms is past any sensible max
        return int(min(self.base_ms * 2**exponent, self.max_ms))


class BackoffStore(Protocol):
    async def wait_ms(self, key: str) -> int:
        """Milliseconds before `key` may try again (0: now)."""
        ...

    async def fail(self, key: str, policy: BackoffPolicy) -> int:
        """Count a failure; the wait it imposes, in milliseconds."""
        ...

    async def clear(self, key: str) -> None: ...

    async def take_turn(self, key: str, ttl_ms: int) -> bool:
        """Claim the one attempt under way for `key` (False: another holds it); it ends by
        `end_turn` or after `ttl_ms` (a process that died mid-attempt)."""
        ...

    async def end_turn(self, key: str) -> None: ...


_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

_WAIT = (
    _NOW
    + """
local free_at = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if free_at > now then return free_at - now end
return 0
"""
)

_FAIL = (
    _NOW
    + """
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local free, base, max, memory = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local wait = 0
if n > free then
  wait = math.floor(math.min(base * 2 ^ math.min(n - free - 1, 40), max))
  redis.call('HSET', KEYS[1], 'until', now + wait)
end
redis.call('PEXPIRE', KEYS[1], math.max(memory, wait))
return wait
"""
)


class RedisBackoffStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._wait = client.register_script(_WAIT)
        self._fail = client.register_script(_FAIL)

    async def _call(self, work: Any) -> Any:
        try:
            return await work
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise LimitStoreUnavailable(str(exc)) from exc
        except RedisError as exc:
            if "LOADING" in str(exc) or "READONLY" in str(exc):
                raise LimitStoreUnavailable(str(exc)) from exc
            raise

    async def wait_ms(self, key: str) -> int:
        return int(await self._call(self._wait(keys=[key], args=[])))

    async def fail(self, key: str, policy: BackoffPolicy) -> int:
        args = [policy.free, policy.base_ms, policy.max_ms, policy.memory_ms]
        return int(await self._call(self._fail(keys=[key], args=args)))

    async def clear(self, key: str) -> None:
        await self._call(self._client.delete(key))

    async def take_turn(self, key: str, ttl_ms: int) -> bool:
        return bool(await self._call(self._client.set(key, "1", nx=True, px=ttl_ms)))

    async def end_turn(self, key: str) -> None:
        await self._call(self._client.delete(key))


@dataclass
class _Failures:
    count: int
    until_ms: int  # no try before this
    forget_ms: int  # forgotten after this


class MemoryBackoffStore:
    """Per process; bounded: at most `max_keys` keys, the soonest forgotten evicted first."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._keys: dict[str, _Failures] = {}
        self._max_keys = max_keys
        self._turns: dict[str, int] = {}  # key -> when its turn lapses (ms)

    @staticmethod
    def _now() -> int:
        return int(time.time() * 1000)

    def _live(self, key: str, now: int) -> _Failures | None:
        found = self._keys.get(key)
        if found is not None and found.forget_ms <= now:
            del self._keys[key]
            return None
        return found

    async def wait_ms(self, key: str) -> int:
        now = self._now()
        found = self._live(key, now)
        return max(0, found.until_ms - now) if found else 0

    async def fail(self, key: str, policy: BackoffPolicy) -> int:
        now = self._now()
        found = self._live(key, now) or _Failures(0, 0, 0)
        found.count += 1
        wait = policy.wait_after(found.count)
        if wait:
            found.until_ms = now + wait
        found.forget_ms = now + max(policy.memory_ms, wait)
        self._keys[key] = found
        if len(self._keys) > self._max_keys:
            for stale in [k for k, v in self._keys.items() if v.forget_ms <= now]:
                del self._keys[stale]
            while len(self._keys) > self._max_keys:
                del self._keys[min(self._keys, key=lambda k: self._keys[k].forget_ms)]
        return wait

    async def clear(self, key: str) -> None:
        self._keys.pop(key, None)

    async def take_turn(self, key: str, ttl_ms: int) -> bool:
        now = self._now()
        if self._turns.get(key, 0) > now:
            return False
        self._turns[key] = now + ttl_ms
        if len(self._turns) > self._max_keys:
            self._turns = {k: v for k, v in self._turns.items() if v > now}
        return True

    async def end_turn(self, key: str) -> None:
        self._turns.pop(key, None)
