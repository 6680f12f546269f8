"""The in-process limit store: the same semantics as the Redis one, for one process.

Used when REDIS_URL is unset (embedded mode) and as the fallback during a Redis outage. Each
method runs without awaiting, so on the event loop it is atomic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mtai.providers.limits.base import Check, Decision, Settlement, Usage


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Window:
    entries: dict[str, tuple[int, int]] = field(default_factory=dict)  # member -> (at, weight)

    def clean(self, now: int, span: int) -> None:
        for member in [m for m, (at, _) in self.entries.items() if at <= now - span]:
            del self.entries[member]

    @property
    def used(self) -> int:
        return sum(weight for _, weight in self.entries.values())


@dataclass
class _Budget:
    spent: int | None = None
    reservations: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # member -> (until, amount)

    def clean(self, now: int) -> None:
        for member in [m for m, (until, _) in self.reservations.items() if until <= now]:
            del self.reservations[member]

    @property
    def reserved(self) -> int:
        return sum(amount for _, amount in self.reservations.values())


class MemoryLimitStore:
    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._slots: dict[str, dict[str, int]] = {}  # key -> member -> lease expiry
        self._budgets: dict[str, _Budget] = {}

    def _evaluate(self, check: Check, now: int) -> Decision | None:
        if check.kind == "window":
            window = self._windows.setdefault(check.key, _Window())
            window.clean(now, check.span_ms)
            used = window.used
            if used + check.amount > check.limit:
                oldest = min((at for at, _ in window.entries.values()), default=now)
                return Decision(False, check, used, max(1, oldest + check.span_ms - now))
        elif check.kind == "slots":
            leases = self._slots.setdefault(check.key, {})
            for member in [m for m, until in leases.items() if until <= now]:
                del leases[member]
            if len(leases) + 1 > check.limit:
                return Decision(False, check, len(leases), 1000)
        else:
            budget = self._budgets.setdefault(check.key, _Budget())
            if budget.spent is None:
                return Decision(False, check, needs_seed=check.key)
            budget.clean(now)
            used = budget.spent + budget.reserved
            if used + check.amount > check.limit:
                return Decision(False, check, used, check.span_ms)
        return None

    async def admit(self, checks: list[Check], member: str) -> Decision:
        now = now_ms()
        for check in checks:
            refusal = self._evaluate(check, now)
            if refusal is not None:
                return refusal
        for check in checks:
            if check.kind == "window":
                self._windows[check.key].entries[member] = (now, check.amount)
            elif check.kind == "slots":
                self._slots[check.key][member] = now + check.span_ms
            else:
                self._budgets[check.key].reservations[member] = (now + check.span_ms, check.amount)
        return Decision(True)

    async def settle(self, settlements: list[Settlement], member: str) -> None:
        for item in settlements:
            if item.kind == "window":
                window = self._windows.get(item.key)
                if window is not None and member in window.entries:
                    at, _ = window.entries[member]
                    window.entries[member] = (at, item.actual)
            elif item.kind == "slots":
                self._slots.get(item.key, {}).pop(member, None)
            else:
                budget = self._budgets.setdefault(item.key, _Budget())
                budget.reservations.pop(member, None)
                budget.spent = (budget.spent or 0) + item.actual

    async def seed(self, key: str, spent: int, ttl_ms: int) -> None:
        budget = self._budgets.setdefault(key, _Budget())
        if budget.spent is None:
            budget.spent = spent

    async def usage(self, check: Check) -> Usage:
        now = now_ms()
        if check.kind == "window":
            window = self._windows.get(check.key, _Window())
            window.clean(now, check.span_ms)
            return Usage(window.used)
        if check.kind == "slots":
            leases = self._slots.get(check.key, {})
            return Usage(sum(1 for until in leases.values() if until > now))
        budget = self._budgets.get(check.key, _Budget())
        budget.clean(now)
        return Usage(budget.spent or 0, budget.reserved)

    async def ping(self) -> None:
        """Always reachable."""

    async def aclose(self) -> None:
        """Nothing to release."""
