"""Two stores with one contract: `get` a value or None, `set` it with a time to live, and
`first`: whether a key is new (set if absent, atomically), for what may be used once.

A cache must never make a request fail: when Redis is unreachable, reads miss, writes are
dropped and `first` answers True (all logged).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from mtai.logging import get_logger

log = get_logger(__name__)


class CacheStore(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_seconds: int) -> None: ...

    async def first(self, key: str, ttl_seconds: int) -> bool: ...


class MemoryCacheStore:
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return item[1]

    async def set(self, key: str, value: str, ttl_seconds: int) -> None:
        self._items[key] = (time.monotonic() + ttl_seconds, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    async def first(self, key: str, ttl_seconds: int) -> bool:
        if await self.get(key) is not None:
            return False
        await self.set(key, "1", ttl_seconds)
        return True


class RedisCacheStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def get(self, key: str) -> str | None:
        try:
            value = await self.client.get(key)
        except (RedisError, OSError) as exc:
            log.warning("cache.unavailable", error=str(exc)[:200])
            return None
        return str(value) if value is not None else None

    async def set(self, key: str, value: str, ttl_seconds: int) -> None:
        try:
            await self.client.set(key, value, ex=ttl_seconds)
        except (RedisError, OSError) as exc:
            log.warning("cache.unavailable", error=str(exc)[:200])

    async def first(self, key: str, ttl_seconds: int) -> bool:
        try:
            return bool(await self.client.set(key, "1", ex=ttl_seconds, nx=True))
        except (RedisError, OSError) as exc:
            log.warning("cache.unavailable", error=str(exc)[:200])
            return True
