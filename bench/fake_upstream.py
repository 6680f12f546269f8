"""A fast fake OpenAI-compatible upstream for the gateway benchmarks: `POST /v1/chat/completions`.

    python -m bench.fake_upstream --port 9000 --latency-ms 20

Every completion answers after a fixed latency. Non-streaming: one JSON body with a `usage`
block. Streaming (`"stream": true`): server-sent events over chunked HTTP/1.1, the reply's
CHUNKS content chunks spread evenly over the latency (the first at latency/CHUNKS, the last at
the latency), then a chunk with `finish_reason`, a usage chunk when
`stream_options.include_usage` is asked, and `data: [DONE]`.

It must not be what limits a benchmark: one process, an asyncio Protocol on uvloop (when
installed) with its own minimal HTTP/1.1 parsing (keep-alive, Content-Length bodies), no
framework, and nothing imported from mtai. `GET /health` answers 200 for readiness checks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

# The reply, one content chunk per piece when streaming (about one token each).
REPLY = (
    "This ",
    "is ",
    "a ",
    "fixed ",
    "reply ",
    "from ",
    "the ",
    "fake ",
    "upstream",
    ".",
)
CHUNKS = len(REPLY)
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024


def _head(status: str, extra: str, length: int | None) -> bytes:
    size = f"content-length: {length}\r\n" if length is not None else ""
    return (f"HTTP/1.1 {status}\r\n{extra}{size}\r\n").encode("latin-1")


def _json_response(status: str, payload: Any, close: bool = False) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    extra = "content-type: application/json\r\n" + ("connection: close\r\n" if close else "")
    return _head(status, extra, len(body)) + body


def _frame(data: bytes) -> bytes:
    """One chunk of a chunked HTTP body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(payload: Any) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return _frame(f"data: {text}\n\n".encode())


class UpstreamProtocol(asyncio.Protocol):
    """One client connection; requests on it are answered in order (no pipelining needed)."""

    latency: float = 0.020

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a response is pending: further bytes wait in the buffer
        self.close_after = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    # -- parsing ----------------------------------------------------------------------------

    def _next(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self._finish(_json_response("431 Too Large", {"error": "headers"}, True), True)
            return
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._finish(_json_response("400 Bad Request", {"error": "request line"}, True), True)
            return
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._finish(_json_response("411 Length Required", {"error": "chunked"}, True), True)
            return
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY_BYTES:
            self._finish(_json_response("413 Too Large", {"error": "body"}, True), True)
            return
        if len(self.buffer) < end + 4 + length:
            return  # the body is still coming
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        connection = headers.get("connection", "").lower()
        self.close_after = connection == "close" or (
            version == "HTTP/1.0" and connection != "keep-alive"
        )
        self.busy = True
        self._route(method, target.split("?", 1)[0], body)

    def _route(self, method: str, path: str, body: bytes) -> None:
        if method == "GET" and path in ("/health", "/v1/health"):
            self._finish(_json_response("200 OK", {"status": "ok"}), self.close_after)
        elif method == "GET" and path in ("/v1/models", "/models"):
            models = {"object": "list", "data": [{"id": "fake", "object": "model"}]}
            self._finish(_json_response("200 OK", models), self.close_after)
        elif method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            self._chat(body)
        else:
            self._finish(_json_response("404 Not Found", {"error": path}), self.close_after)

    # -- answers ----------------------------------------------------------------------------

    def _chat(self, body: bytes) -> None:
        try:
            request = json.loads(body)
            model = str(request.get("model") or "fake")
            stream = bool(request.get("stream"))
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        except (ValueError, AttributeError):
            self._finish(_json_response("400 Bad Request", {"error": "json"}), self.close_after)
            return
        usage = {
            "prompt_tokens": max(1, len(body) // 4),
            "completion_tokens": CHUNKS,
            "total_tokens": max(1, len(body) // 4) + CHUNKS,
        }
        ident = f"chatcmpl-fake{time.monotonic_ns()}"
        created = int(time.time())
        if not stream:
            payload = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(REPLY)},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
            response = _json_response("200 OK", payload, self.close_after)
            self.loop.call_later(self.latency, self._finish, response, self.close_after)
            return
        step = self.latency / CHUNKS
        extra = "content-type: text/event-stream\r\ncache-control: no-cache\r\n"
        extra += "transfer-encoding: chunked\r\n"
        extra += "connection: close\r\n" if self.close_after else ""
        head = _head("200 OK", extra, None)

        def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
            return _sse(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        for i, piece in enumerate(REPLY):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            data = (head if i == 0 else b"") + chunk(delta)
            self.loop.call_later(step * (i + 1), self._write, data)
        tail = chunk({}, "stop")
        if include_usage:
            tail += _sse(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        tail += _sse("[DONE]") + b"0\r\n\r\n"
        self.loop.call_later(self.latency, self._finish, tail, self.close_after)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _finish(self, data: bytes, close: bool) -> None:
        self._write(data)
        self.busy = False
        if close:
            if self.transport is not None:
                self.transport.close()
            return
        if self.buffer:
            self._next()


async def serve(host: str, port: int, latency: float) -> None:
    UpstreamProtocol.latency = latency
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        UpstreamProtocol, host, port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"fake upstream on http://{host}:{port}/v1, latency {latency * 1000:g} ms", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.latency_ms / 1000))
    else:
        uvloop.run(serve(args.host, args.port, args.latency_ms / 1000))
    return 0


# --- launching it from a benchmark ---------------------------------------------------------


@contextlib.contextmanager
def running(port: int, latency_ms: float, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The fake upstream in its own process on 127.0.0.1:port, stopped (by pid) afterwards."""
    from bench.servers import spawn, stop_process, wait_http

    log.unlink(missing_ok=True)
    process = spawn(
        [
            *(sys.executable, "-m", "bench.fake_upstream"),
            *("--port", str(port), "--latency-ms", str(latency_ms)),
        ],
        log,
        Path(__file__).resolve().parent.parent,
        {**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", process, log, timeout=30)
        yield process
    finally:
        stop_process(process)


if __name__ == "__main__":
    sys.exit(main())
