"""The Redis limit store: every check of a request decided and applied in one Lua script.

Time comes from the Redis server (`TIME`), so API processes on different hosts agree on it.
Keys carry the tenant id in a hash tag, `{tenant}`, so a tenant's keys share a cluster slot.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mtai.providers.limits.base import (
    Check,
    Decision,
    LimitStoreUnavailable,
    Settlement,
    Usage,
)

_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(x) return string.format('%d', x) end
local function clean_window(key, span)
  local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now - span)
  if #expired > 0 then
    local total = 0
    for _, m in ipairs(expired) do
      total = total + (tonumber(redis.call('HGET', key .. ':w', m)) or 0)
      redis.call('HDEL', key .. ':w', m)
    end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
    redis.call('DECRBY', key .. ':sum', int(total))
  end
  return tonumber(redis.call('GET', key .. ':sum') or '0')
end
local function clean_budget(key)
  local expired = redis.call('ZRANGEBYSCORE', key .. ':r', '-inf', now)
  if #expired > 0 then
    local total = 0
    for _, m in ipairs(expired) do
      total = total + (tonumber(redis.call('HGET', key .. ':a', m)) or 0)
      redis.call('HDEL', key .. ':a', m)
    end
    redis.call('ZREMRANGEBYSCORE', key .. ':r', '-inf', now)
    redis.call('HINCRBY', key, 'reserved', int(-total))
  end
  return tonumber(redis.call('HGET', key, 'reserved') or '0')
end
"""

# ARGV: member, then for each check: kind, limit, amount, span_ms.
_ADMIT = (
    _PRELUDE
    + """
local member = ARGV[1]
local function arg(i, j) return ARGV[1 + (i - 1) * 4 + j] end
for i = 1, #KEYS do
  local key, kind = KEYS[i], arg(i, 1)
  local limit, amount, span = tonumber(arg(i, 2)), tonumber(arg(i, 3)), tonumber(arg(i, 4))
  if kind == 'window' then
    local used = clean_window(key, span)
    if used + amount > limit then
      local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      local retry = 1
      if #oldest > 0 then retry = math.max(1, tonumber(oldest[2]) + span - now) end
      return {0, i, int(used), int(retry), ''}
    end
  elseif kind == 'slots' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local used = redis.call('ZCARD', key)
    if used + 1 > limit then return {0, i, int(used), 1000, ''} end
  else
    local spent = redis.call('HGET', key, 'spent')
    if not spent then return {0, i, 0, 0, key} end
    local used = tonumber(spent) + clean_budget(key)
    if used + amount > limit then return {0, i, int(used), 0, ''} end
  end
end
for i = 1, #KEYS do
  local key, kind = KEYS[i], arg(i, 1)
  local amount, span = arg(i, 3), tonumber(arg(i, 4))
  if kind == 'window' then
    redis.call('ZADD', key, now, member)
    redis.call('HSET', key .. ':w', member, amount)
    redis.call('INCRBY', key .. ':sum', amount)
    for _, k in ipairs({key, key .. ':w', key .. ':sum'}) do redis.call('PEXPIRE', k, span * 2) end
  elseif kind == 'slots' then
    redis.call('ZADD', key, now + span, member)
    redis.call('PEXPIRE', key, span * 2)
  else
    redis.call('HINCRBY', key, 'reserved', amount)
    redis.call('ZADD', key .. ':r', now + span, member)
    redis.call('HSET', key .. ':a', member, amount)
    redis.call('PEXPIRE', key .. ':r', span * 2)
    redis.call('PEXPIRE', key .. ':a', span * 2)
  end
end
return {1, 0, 0, 0, ''}
"""
)

# ARGV: member, then for each settlement: kind, actual.
_SETTLE = """
local member = ARGV[1]
for i = 1, #KEYS do
  local key, kind, actual = KEYS[i], ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  if kind == 'window' then
    local old = redis.call('HGET', key .. ':w', member)
    if old then
      redis.call('HSET', key .. ':w', member, ARGV[2 * i + 1])
      redis.call('INCRBY', key .. ':sum', string.format('%d', actual - tonumber(old)))
    end
  elseif kind == 'slots' then
    redis.call('ZREM', key, member)
  else
    local amount = redis.call('HGET', key .. ':a', member)
    if amount then
      redis.call('HDEL', key .. ':a', member)
      redis.call('ZREM', key .. ':r', member)
      redis.call('HINCRBY', key, 'reserved', string.format('%d', -tonumber(amount)))
    end
    redis.call('HINCRBY', key, 'spent', ARGV[2 * i + 1])
  end
end
return 1
"""

# ARGV: spent, ttl_ms.
_SEED = """
if redis.call('HSETNX', KEYS[1], 'spent', ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""

# ARGV: kind, span_ms.
_USAGE = (
    _PRELUDE
    + """
local key, kind, span = KEYS[1], ARGV[1], tonumber(ARGV[2])
if kind == 'window' then return {int(clean_window(key, span)), 0} end
if kind == 'slots' then
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return {redis.call('ZCARD', key), 0}
end
return {int(tonumber(redis.call('HGET', key, 'spent') or '0')), int(clean_budget(key))}
"""
)


def tls_options(url: str, ca_file: str | None) -> dict[str, Any]:
    """Certificate checks for `rediss://`: always verified, against `ca_file` if given."""
    if not url.startswith("rediss://"):
        return {}
    return {"ssl_cert_reqs": "required", **({"ssl_ca_certs": ca_file} if ca_file else {})}


def connect(
    url: str, *, ca_file: str | None = None, timeout: float = 2.0, max_connections: int = 64
) -> aioredis.Redis:
    """`redis://` or `rediss://` (TLS, certificates verified; `ca_file` for a private CA).

    A blocking pool: under a burst, requests wait briefly for a connection instead of failing.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        "decode_responses": True,
        "max_connections": max_connections,
        "timeout": timeout,
    }
    pool = aioredis.BlockingConnectionPool.from_url(url, **options, **tls_options(url, ca_file))
    return aioredis.Redis(connection_pool=pool)


class RedisLimitStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)
        self._seed = client.register_script(_SEED)
        self._usage = client.register_script(_USAGE)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise LimitStoreUnavailable(str(exc)) from exc
        except RedisError as exc:
            if "LOADING" in str(exc) or "READONLY" in str(exc):
                raise LimitStoreUnavailable(str(exc)) from exc
            raise

    async def admit(self, checks: list[Check], member: str) -> Decision:
        if not checks:
            return Decision(True)
        args: list[Any] = [member]
        for check in checks:
            args += [check.kind, check.limit, check.amount, check.span_ms]
        allowed, index, used, retry, seed = await self._call(
            self._admit, [c.key for c in checks], args
        )
        if int(allowed):
            return Decision(True)
        failed = checks[int(index) - 1]
        return Decision(False, failed, int(used), int(retry), needs_seed=seed or None)

    async def settle(self, settlements: list[Settlement], member: str) -> None:
        if not settlements:
            return
        args: list[Any] = [member]
        for item in settlements:
            args += [item.kind, item.actual]
        await self._call(self._settle, [s.key for s in settlements], args)

    async def seed(self, key: str, spent: int, ttl_ms: int) -> None:
        await self._call(self._seed, [key], [spent, ttl_ms])

    async def usage(self, check: Check) -> Usage:
        used, reserved = await self._call(self._usage, [check.key], [check.kind, check.span_ms])
        return Usage(int(used), int(reserved))

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise LimitStoreUnavailable(str(exc)) from exc

    async def aclose(self) -> None:
        await self.client.aclose()
