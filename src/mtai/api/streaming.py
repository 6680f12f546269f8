"""Server-sent events that close their source when the client goes away.

Starlette's StreamingResponse abandons its iterator on disconnect; ours closes it (shielded), so
the gateway stops the upstream call and settles what was generated.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
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
        self, body: AsyncGenerator[str, None], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            body, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
        )
        self._body = body

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()
