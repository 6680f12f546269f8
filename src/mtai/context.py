"""Per-request context shared by logs and the audit trail."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

# The id the server made for this request: the key of its ledger row, prompt log and limiter
# entries, the `X-Request-ID` it answers with, and the id an operator looks up.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# The client's own `X-Request-ID`, for correlation only (echoed, logged, kept beside the ledger
# row); nothing the server relies on is keyed on it.
client_request_id_var: ContextVar[str | None] = ContextVar("client_request_id", default=None)
# The same id in the ASGI scope: Starlette answers unhandled errors outside every middleware,
# after the context variable above has been reset, and reads it from here.
REQUEST_ID_SCOPE_KEY = "mtai.request_id"


def new_request_id() -> str:
    """A server-made request id (random, 32 hex characters)."""
    return uuid.uuid4().hex


class UpstreamClock:
    """Time a request spent waiting on upstreams (and backoff), so the gateway can report
    its own added latency apart from the model's."""

    def __init__(self) -> None:
        self.seconds = 0.0


upstream_clock_var: ContextVar[UpstreamClock | None] = ContextVar("upstream_clock", default=None)
