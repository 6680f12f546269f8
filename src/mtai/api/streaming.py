"""Server-sent events that close their source when the client goes away, and the one relay
of a gateway stream into an ingress API's events.

Starlette's StreamingResponse abandons its iterator on disconnect; ours closes it (shielded), so
the gateway stops the upstream call and settles what was generated.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any, Protocol

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Send

from mtai.errors import AppError
from mtai.providers.llm.base import Delta, ToolCallDelta
from mtai.services.gateway import Outcome

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(data: Any, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


class EventStreamResponse(StreamingResponse):
    def __init__(
        self,
        body: AsyncGenerator[str, None],
        headers: dict[str, str] | None = None,
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`on_close` runs after the body is closed, even if the body never started (the
        client left before the first byte): what the body would have released in its own
        `finally` is released there."""
        super().__init__(
            body, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
        )
        self._body = body
        self._on_close = on_close

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()
                if self._on_close is not None:
                    await self._on_close()


class Answer(Protocol):
    """What relay reads of the gateway's StreamSession."""

    outcome: Outcome | None

    def events(self) -> AsyncGenerator[Delta | ToolCallDelta, None]: ...


async def relay(
    session: Answer,
    *,
    opening: Iterable[str],
    on_event: Callable[[Delta | ToolCallDelta], Iterable[str]],
    on_error: Callable[[AppError], Iterable[str]],
    closing: Callable[[Outcome], Iterable[str] | Awaitable[Iterable[str]]],
) -> AsyncGenerator[str, None]:
    """A gateway stream as one API's event lines: `opening`, then each answer piece's lines,
    then the lines `closing` makes of the outcome (it may be async, to store the answer before
    the client is told it is complete). An error mid-answer ends the stream with `on_error`'s
    lines (the status line is long gone); the answer's generator is closed either way."""
    for line in opening:
        yield line
    answer = session.events()
    try:
        async for piece in answer:
            for line in on_event(piece):
                yield line
    except AppError as exc:
        for line in on_error(exc):
            yield line
        return
    finally:
        await answer.aclose()
    assert session.outcome is not None
    lines = closing(session.outcome)
    if isinstance(lines, Awaitable):
        lines = await lines
    for line in lines:
        yield line
