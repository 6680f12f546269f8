"""Admission control primitives, shared by the Redis store and the in-process store.

One `admit` call checks every limit that applies to a request and, only if all pass, applies
them all: atomically (a Lua script in Redis, a lock-free critical section in-process), so
concurrent requests can never overshoot a limit or a budget.

Kinds of check:
- window: a sliding window (e.g. 60 s) of weighted entries, for requests and tokens per minute;
- slots: leases on concurrent requests, each expiring after `span_ms` if never released;
- budget: spend within a period plus reservations, each reservation expiring after `span_ms`
  (so a crashed request's reservation is released) and settled to the actual amount.
Amounts are integers (requests, tokens, or nano-dollars).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Kind = Literal["window", "slots", "budget"]


@dataclass(frozen=True)
class Check:
    kind: Kind
    key: str
    limit: int
    amount: int
    span_ms: int
    name: str  # for messages and metrics: "tenant rpm", "key monthly_usd", ...


@dataclass(frozen=True)
class Decision:
    allowed: bool
    failed: Check | None = None
    used: int = 0  # the failed check's current usage
    retry_after_ms: int = 0
    needs_seed: str | None = None  # a budget key that must be seeded from the ledger first


@dataclass(frozen=True)
class Settlement:
    kind: Kind
    key: str
    actual: int  # window: the real weight; budget: the real spend; slots: ignored


@dataclass(frozen=True)
class Usage:
    used: int
    reserved: int = 0


class LimitStoreUnavailable(Exception):
    """The shared store cannot be reached (Redis down)."""


class LimitStore(Protocol):
    async def admit(self, checks: list[Check], member: str) -> Decision: ...

    async def settle(self, settlements: list[Settlement], member: str) -> None: ...

    async def seed(self, key: str, spent: int, ttl_ms: int) -> None:
        """Set a budget's spend from the ledger, unless it is already known."""
        ...

    async def usage(self, check: Check) -> Usage: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...
