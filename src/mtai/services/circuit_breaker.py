"""Skip an upstream that keeps failing, for a cool-down, then let one probe through.

State is per process: each API process learns about a failing upstream on its own, within
`threshold` failures, which costs little and needs no shared state.

Only the upstream's own failures count (5xx, timeouts, unreachable, malformed answers; the
router decides): a request the upstream rejects (4xx) says nothing about its health, so no
caller can open a breaker others depend on by sending bad requests. Keys are chosen by the
router so that a tenant's own credential has its own breaker. At most `max_keys` upstreams
are tracked; the least recently failing is forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    def __init__(
        self, threshold: int = 5, cooldown_seconds: float = 30.0, *, max_keys: int = 10_000
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown_seconds
        self.max_keys = max_keys
        self._states: OrderedDict[str, _State] = OrderedDict()

    def allow(self, key: str) -> bool:
        state = self._states.get(key)
        if state is None or state.opened_at is None:
            return True
        if time.monotonic() - state.opened_at < self.cooldown or state.probing:
            return False
        state.probing = True  # half-open: exactly one request tests the upstream
        return True

    def success(self, key: str) -> None:
        self._states.pop(key, None)

    def failure(self, key: str) -> None:
        state = self._states.setdefault(key, _State())
        self._states.move_to_end(key)
        state.failures += 1
        if state.probing or state.failures >= self.threshold:
            state.opened_at = time.monotonic()
            state.probing = False
        while len(self._states) > self.max_keys:
            self._states.popitem(last=False)

    def release(self, key: str) -> None:
        """An attempt that proved nothing about the upstream (it rejected the request): a
        probe it was ends without a verdict, so the next request may probe again."""
        state = self._states.get(key)
        if state is not None:
            state.probing = False

    def is_open(self, key: str) -> bool:
        state = self._states.get(key)
        return state is not None and state.opened_at is not None

    def __len__(self) -> int:
        return len(self._states)
