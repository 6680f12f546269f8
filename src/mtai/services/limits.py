"""Rate limits and budgets per tenant and per API key, admitted before any upstream call.

Per request: requests per minute, tokens per minute (reserved at the worst case, prompt plus
max_tokens, then settled to the actual), concurrent requests (a lease, released at the end or
expiring), and monthly budgets in USD and tokens (the worst-case cost reserved, then settled).
All checks of one request are decided together and atomically by the limit store, so
concurrent requests cannot overshoot. Spend is seeded from the usage ledger in Postgres when
the store does not know it yet (first use in a month, or a Redis that lost its data).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mtai.errors import AppError, ServiceUnavailable
from mtai.logging import get_logger
from mtai.providers.limits.base import (
    Check,
    Decision,
    LimitStore,
    LimitStoreUnavailable,
    Settlement,
)
from mtai.providers.limits.memory import MemoryLimitStore

log = get_logger(__name__)
MINUTE_MS = 60_000
LOGIN_WINDOW_MS = 5 * MINUTE_MS
MICRO = Decimal(1_000_000)
# Tokenizers differ between providers: reserve the prompt with a margin.
PROMPT_MARGIN = 1.2
PROMPT_MARGIN_TOKENS = 8


class LimitSettings(BaseModel):
    """Limits of a tenant or an API key; absent means unlimited."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=0, le=10_000_000, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=0, le=10**12, description="Tokens per minute.")
    concurrency: int | None = Field(default=None, ge=0, le=100_000, description="In flight.")
    monthly_usd: Decimal | None = Field(default=None, ge=0, le=10**9, decimal_places=6)
    monthly_tokens: int | None = Field(default=None, ge=0, le=10**15)


class OutagePolicy(StrEnum):
    REFUSE = "refuse"
    LOCAL = "local"


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"


class BudgetExceeded(AppError):
    status_code = 429
    code = "budget_exceeded"


@dataclass(frozen=True)
class Estimate:
    tokens: int
    cost_usd: Decimal


@dataclass(frozen=True)
class Scope:
    """Whose limits: a tenant, or one of its API keys."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID | None
    limits: LimitSettings

    def prefix(self) -> str:
        who = f"k:{self.key_id}" if self.key_id else "t"
        return f"mtai:lim:{{{self.tenant_id}}}:{who}"


def month(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


def seconds_to_month_end(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    nxt = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return max(1, int((nxt - now).total_seconds()))


def micro_usd(amount: Decimal) -> int:
    """Rounded up: a budget can only be over-counted, never under-counted."""
    return math.ceil(amount * MICRO)


def reserve_tokens(prompt_estimate: int, max_tokens: int) -> int:
    return math.ceil(prompt_estimate * PROMPT_MARGIN) + PROMPT_MARGIN_TOKENS + max_tokens


def checks_for(scope: Scope, estimate: Estimate, lease_ms: int) -> list[Check]:
    limits, base, period = scope.limits, scope.prefix(), month()
    who = "key" if scope.key_id else "tenant"
    checks = []
    if limits.rpm is not None:
        checks.append(Check("window", f"{base}:rpm", limits.rpm, 1, MINUTE_MS, f"{who} rpm"))
    if limits.tpm is not None:
        checks.append(
            Check("window", f"{base}:tpm", limits.tpm, estimate.tokens, MINUTE_MS, f"{who} tpm")
        )
    if limits.concurrency is not None:
        checks.append(
            Check("slots", f"{base}:conc", limits.concurrency, 1, lease_ms, f"{who} concurrency")
        )
    if limits.monthly_usd is not None:
        checks.append(
            Check(
                "budget",
                f"{base}:usd:{period}",
                micro_usd(limits.monthly_usd),
                micro_usd(estimate.cost_usd),
                lease_ms,
                f"{who} monthly_usd",
            )
        )
    if limits.monthly_tokens is not None:
        checks.append(
            Check(
                "budget",
                f"{base}:tok:{period}",
                limits.monthly_tokens,
                estimate.tokens,
                lease_ms,
                f"{who} monthly_tokens",
            )
        )
    return checks


@dataclass
class Admission:
    """What one admitted request holds; `settle` once, with what it really used."""

    store: LimitStore
    member: str
    checks: list[Check]
    settled: bool = False

    async def settle(self, tokens: int, cost_usd: Decimal) -> None:
        if self.settled or not self.checks:
            return
        self.settled = True
        settlements = []
        for check in self.checks:
            if check.name.endswith("tpm") or check.name.endswith("monthly_tokens"):
                settlements.append(Settlement(check.kind, check.key, tokens))
            elif check.name.endswith("monthly_usd"):
                settlements.append(Settlement(check.kind, check.key, micro_usd(cost_usd)))
            elif check.kind == "slots":
                settlements.append(Settlement("slots", check.key, 0))
        try:
            await self.store.settle(settlements, self.member)
        except LimitStoreUnavailable:
            # Leases and reservations expire by themselves; the ledger keeps the true spend.
            log.warning("limits.settle_failed", member=self.member)


# Seeds a budget key with this month's spend from the ledger: (tenant, key or None, kind).
SpendLookup = Callable[[uuid.UUID, uuid.UUID | None, str], Awaitable[int]]


class LimitService:
    def __init__(
        self,
        store: LimitStore | None,
        spend: SpendLookup,
        *,
        policy: OutagePolicy,
        lease_seconds: float,
        retry_seconds: float = 2.0,
    ) -> None:
        self.store = store or MemoryLimitStore()
        self.shared = store is not None
        self.fallback = MemoryLimitStore()
        self.spend = spend
        self.policy = policy
        self.lease_ms = int(lease_seconds * 1000)
        self.retry_seconds = retry_seconds
        self._down_until = 0.0

    def _store(self) -> LimitStore:
        if self.shared and time.monotonic() < self._down_until:
            return self._outage()
        return self.store

    def _outage(self) -> LimitStore:
        if self.policy is OutagePolicy.LOCAL:
            return self.fallback
        error = ServiceUnavailable(
            "Rate limits cannot be checked right now (Redis is unreachable); retry shortly.",
            code="limits_unavailable",
        )
        error.headers = {"Retry-After": str(math.ceil(self.retry_seconds))}
        raise error

    async def admit(self, scopes: list[Scope], estimate: Estimate) -> Admission:
        """All of `scopes`' limits checked and applied at once. The member that holds the
        request's window entries, lease and reservations is made here, for this admission only:
        nothing a client sends (X-Request-ID) can make two requests share or overwrite one."""
        member = uuid.uuid4().hex
        checks = [c for scope in scopes for c in checks_for(scope, estimate, self.lease_ms)]
        store = self._store()
        if not checks:
            return Admission(store, member, [])
        by_key = {c.key: s for s in scopes for c in checks_for(s, estimate, self.lease_ms)}
        for _ in range(len(checks) + 1):
            try:
                decision = await store.admit(checks, member)
            except LimitStoreUnavailable as exc:
                log.warning("limits.store_unavailable", error=str(exc)[:200], policy=self.policy)
                self._down_until = time.monotonic() + self.retry_seconds
                store = self._outage()
                continue
            if decision.allowed:
                return Admission(store, member, checks)
            if decision.needs_seed is None:
                raise self._refusal(decision)
            scope = by_key[decision.needs_seed]
            kind = "usd" if ":usd:" in decision.needs_seed else "tokens"
            spent = await self.spend(scope.tenant_id, scope.key_id, kind)
            await store.seed(decision.needs_seed, spent, (seconds_to_month_end() + 86400) * 1000)
        raise ServiceUnavailable("Limits could not be checked; retry.", code="limits_unavailable")

    async def charge(self, scopes: list[Scope], tokens: int, cost_usd: Decimal) -> None:
        """Add work done outside a request (a document's embedding in the worker) to the
        scopes' monthly budgets; it is in the ledger too, so a lost charge is re-seeded."""
        checks = [
            c
            for scope in scopes
            for c in checks_for(scope, Estimate(tokens, cost_usd), self.lease_ms)
            if c.kind == "budget"
        ]
        if not checks:
            return
        by_key = {c.key: s for s in scopes for c in checks_for(s, Estimate(0, cost_usd), 0)}
        try:
            store = self._store()
            for check in checks:
                scope = by_key[check.key]
                kind = "usd" if ":usd:" in check.key else "tokens"
                spent = await self.spend(scope.tenant_id, scope.key_id, kind)
                await store.seed(check.key, spent, (seconds_to_month_end() + 86400) * 1000)
            await Admission(store, uuid.uuid4().hex, checks).settle(tokens, cost_usd)
        except (LimitStoreUnavailable, ServiceUnavailable):
            log.warning("limits.charge_failed", tokens=tokens)

    @staticmethod
    def _refusal(decision: Decision) -> AppError:
        check = decision.failed
        assert check is not None
        if check.kind == "budget":
            reset = seconds_to_month_end()
            what = "USD" if check.name.endswith("usd") else "tokens"
            error: AppError = BudgetExceeded(
                f"The {check.name.split()[0]}'s monthly {what} budget does not cover this "
                "request's worst case (prompt plus max_tokens). Lower max_tokens, or ask an "
                "administrator to raise the budget; it resets at the start of next month (UTC)."
            )
        else:
            reset = max(1, math.ceil(decision.retry_after_ms / 1000))
            error = RateLimited(
                f"Rate limit reached ({check.name}: {check.limit}). Retry after {reset} s."
            )
        remaining = max(0, check.limit - decision.used)
        error.headers = {
            "Retry-After": str(reset),
            "X-RateLimit-Limit": str(check.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }
        return error

    async def throttle_login(self, client_ip: str, *, per_ip: int) -> None:
        """A generous cap on login attempts per client address, whatever the email.

        Wrong passwords are slowed down per (email, address) by services.login_throttle; this
        only bounds one address's total. During a Redis outage logins fall back to the
        per-process store whatever the policy: locking everyone out helps nobody.
        """
        checks = [
            Check(
                "window", f"mtai:login:ip:{{{client_ip}}}", per_ip, 1, LOGIN_WINDOW_MS, "ip login"
            ),
        ]
        for check in checks:
            try:
                decision = await self._store_for_login().admit([check], uuid.uuid4().hex)
            except LimitStoreUnavailable:
                self._down_until = time.monotonic() + self.retry_seconds
                decision = await self.fallback.admit([check], uuid.uuid4().hex)
            if not decision.allowed:
                error = self._refusal(decision)
                error.detail = (
                    "Too many login attempts; wait before trying again "
                    f"({math.ceil(decision.retry_after_ms / 1000)} s)."
                )
                raise error

    def _store_for_login(self) -> LimitStore:
        if self.shared and time.monotonic() < self._down_until:
            return self.fallback
        return self.store

    async def consumption(self, scope: Scope) -> dict[str, Any]:
        """Current use of each configured limit, for the admin API."""
        found: dict[str, Any] = {}
        store = self._store()
        for check in checks_for(scope, Estimate(0, Decimal(0)), self.lease_ms):
            label = check.name.split()[1]
            try:
                if check.kind == "budget":
                    kind = "usd" if label == "monthly_usd" else "tokens"
                    spent = await self.spend(scope.tenant_id, scope.key_id, kind)
                    await store.seed(check.key, spent, (seconds_to_month_end() + 86400) * 1000)
                usage = await store.usage(check)
            except LimitStoreUnavailable:
                store = self._outage()
                usage = await store.usage(check)
            if label == "monthly_usd":
                found[label] = {
                    "spent": Decimal(usage.used) / MICRO,
                    "reserved": Decimal(usage.reserved) / MICRO,
                }
            elif check.kind == "budget":
                found[label] = {"spent": usage.used, "reserved": usage.reserved}
            else:
                found[label] = usage.used
        return found

    async def aclose(self) -> None:
        await self.store.aclose()
