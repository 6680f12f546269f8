"""What every LLM adapter takes and gives, and the errors the router understands."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from mtai.providers.llm.capabilities import Support
from mtai.providers.llm.conversation import (
    Completion,
    Delta,
    Generation,
    Message,
    Role,
    StreamEnd,
    StreamEvent,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "Completion",
    "Delta",
    "Generation",
    "Message",
    "Role",
    "StreamEnd",
    "StreamEvent",
    "ToolCallDelta",
    "Usage",
]


@dataclass(frozen=True)
class Source:
    """A retrieved passage offered to the model (and quoted by the extractive answerer)."""

    number: int
    title: str
    text: str


@dataclass(frozen=True)
class CompletionRequest:
    """One upstream call: the canonical conversation, for one model of the chain."""

    model: str  # the upstream's own model id
    messages: list[Message]
    max_tokens: int
    generation: Generation = field(default_factory=Generation)
    sources: list[Source] = field(default_factory=list)

    @property
    def temperature(self) -> float | None:
        return self.generation.temperature


# What a tenant is told when an upstream cannot be reached, refused the connection or did not
# answer in time: one sentence for all three, so answers do not map which ports are open.
UNREACHABLE = "the upstream could not be reached or did not answer in time"


class UpstreamError(Exception):
    """An upstream failed. `retryable` errors (429, 5xx, timeouts) may be retried or failed over.

    The message (str) may be shown to the tenant: it never carries the upstream's own words.
    `detail` holds them (truncated, secrets redacted) for the operator's logs. `server_fault`
    says whether the upstream itself failed (5xx, unreachable, timeout, malformed answer), the
    only failures that count towards its circuit breaker; a 4xx is the caller's request or key.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        retry_after: float | None = None,
        detail: str = "",
        server_fault: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.detail = detail
        self.server_fault = (
            server_fault if server_fault is not None else status is None or status >= 500
        )

    @property
    def explained(self) -> str:
        """The message with the upstream's own words, for operators (logs, doctor)."""
        return f"{self} ({self.detail})" if self.detail else str(self)


def redact(text: str, secrets: list[str], *, limit: int = 300) -> str:
    """`text` cut to `limit` characters with every secret (4+ characters) replaced by ***."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text[:limit]


def error_for_status(status: int, body: str, retry_after: str | None = None) -> UpstreamError:
    """The error for an HTTP status; `body` (already redacted) goes to `detail` only."""
    delay = None
    if retry_after is not None:
        try:
            delay = max(0.0, float(retry_after))
        except ValueError:
            delay = None
    retryable = status == 429 or status >= 500 or status == 408
    return UpstreamError(
        f"upstream answered {status}",
        status=status,
        retryable=retryable,
        retry_after=delay,
        detail=body[:300],
    )


class LLMProvider(Protocol):
    name: str

    @property
    def support(self) -> Mapping[str, Support]:
        """What this adapter does with each canonical feature (capabilities.FEATURES)."""

    async def complete(self, request: CompletionRequest) -> Completion: ...

    def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]: ...

    async def aclose(self) -> None: ...
