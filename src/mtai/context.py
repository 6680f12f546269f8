"""Per-request context shared by logs and the audit trail."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class UpstreamClock:
    """Time a request spent waiting on upstreams (and backoff), so the gateway can report
    its own added latency apart from the model's."""

    def __init__(self) -> None:
        self.seconds = 0.0


upstream_clock_var: ContextVar[UpstreamClock | None] = ContextVar("upstream_clock", default=None)
