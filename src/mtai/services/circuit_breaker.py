"""Skip an upstream that keeps failing, for a cool-down, then let one probe through.

State is per process: each API process learns about a failing upstream on its own, within
`threshold` failures, which costs little and needs no shared state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    def __init__(self, threshold: int = 5, cooldown_seconds: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown_seconds
        self._states: dict[str, _State] = {}

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
        state.failures += 1
        if state.probing or state.failures >= self.threshold:
            state.opened_at = time.monotonic()
            state.probing = False
