"""Server-sent events that close their source when the client goes away.

Starlette's StreamingResponse abandons its iterator on disconnect; ours closes it (shielded), so
the gateway stops the upstream call and settles what was generated.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Send

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
