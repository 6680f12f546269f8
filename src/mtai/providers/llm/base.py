"""What every LLM adapter takes and gives, and the errors the router understands."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Source:
    """A retrieved passage offered to the model (and quoted by the extractive answerer)."""

    number: int
    title: str
    text: str


@dataclass(frozen=True)
class CompletionRequest:
    model: str  # the upstream's own model id
    messages: list[Message]
    max_tokens: int
    temperature: float | None = None
    sources: list[Source] = field(default_factory=list)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage | None  # None when the upstream did not say
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class StreamEnd:
    usage: Usage | None
    finish_reason: str = "stop"


StreamEvent = Delta | StreamEnd


class UpstreamError(Exception):
    """An upstream failed. `retryable` errors (429, 5xx, timeouts) may be retried or failed over."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


def error_for_status(status: int, message: str, retry_after: str | None = None) -> UpstreamError:
    delay = None
    if retry_after is not None:
        try:
            delay = max(0.0, float(retry_after))
        except ValueError:
            delay = None
    retryable = status == 429 or status >= 500 or status == 408
    return UpstreamError(
        f"upstream answered {status}: {message[:300]}",
        status=status,
        retryable=retryable,
        retry_after=delay,
    )


class LLMProvider(Protocol):
    name: str

    async def complete(self, request: CompletionRequest) -> Completion: ...

    def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]: ...

    async def aclose(self) -> None: ...
