"""Request context for every request: id, logs, timing header, body size limit."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping

import structlog
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mtai.api.errors import error_body
from mtai.context import (
    REQUEST_ID_SCOPE_KEY,
    UpstreamClock,
    client_request_id_var,
    new_request_id,
    request_id_var,
    upstream_clock_var,
)
from mtai.logging import get_logger

log = get_logger("mtai.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _TooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing passes it through instead of making it a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body is larger than {limit} bytes; send less.")


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        upload_paths: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Paths that take files have their own, larger limit (the service checks the exact one).
        self.upload_paths = dict(upload_paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        # The server always makes the request id; a safe client id is kept for correlation.
        incoming = headers.get("x-request-id", "")
        client_id = incoming if _SAFE_ID.match(incoming) else None
        request_id = new_request_id()
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        token = request_id_var.set(request_id)
        client_token = client_request_id_var.set(client_id)
        echoed = [(b"x-client-request-id", client_id.encode())] if client_id else []
        clock = UpstreamClock()
        clock_token = upstream_clock_var.set(clock)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if client_id:
            structlog.contextvars.bind_contextvars(client_request_id=client_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                # What mtai itself added: everything but the wait on upstream models so far.
                elapsed_ms = (time.perf_counter() - started - clock.seconds) * 1000
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *echoed,
                    (b"x-mtai-overhead-ms", f"{elapsed_ms:.2f}".encode()),
                ]
            await send(message)

        received = 0
        limit = self.upload_paths.get(scope["path"].rstrip("/"), self.max_body_bytes)

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                await self._too_large(send_wrapper, scope["path"], limit)
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except _TooLarge:
            if response_started:
                raise
            await self._too_large(send_wrapper, scope["path"], limit)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id", "client_request_id", "tenant_id")
            request_id_var.reset(token)
            client_request_id_var.reset(client_token)
            upstream_clock_var.reset(clock_token)

    @staticmethod
    async def _too_large(send: Send, path: str, limit: int) -> None:
        body = json.dumps(
            error_body(
                413,
                f"Request body is larger than {limit} bytes; send less.",
                "payload_too_large",
                path=path,
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
