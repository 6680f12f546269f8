"""One loopback HTTP server that speaks three paid LLM APIs, so the gateway is tested offline.

`FakeUpstream` serves, on one port:

* the OpenAI API: ``POST /v1/chat/completions`` (JSON and SSE), ``POST /v1/embeddings``,
  ``GET /v1/models``;
* the Anthropic Messages API: ``POST /v1/messages`` (JSON and named-event SSE);
* the AWS Bedrock Runtime Converse API: ``POST /model/{modelId}/converse`` and
  ``POST /model/{modelId}/converse-stream`` (binary ``application/vnd.amazon.eventstream``);
* Bedrock InvokeModel for Amazon Titan Text Embeddings V2: ``POST /model/{modelId}/invoke``.

Tests script what the next request(s) to a model get (`FakeUpstream.script`), read what
arrived (`FakeUpstream.requests`) and which responses the client abandoned before they were
complete (`FakeUpstream.cancelled`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, get_args

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

Kind = Literal["ok", "400", "429", "500", "timeout", "malformed", "slow"]
Finish = Literal["stop", "length", "tool_calls"]
Protocol = Literal["openai", "anthropic", "bedrock", "cohere"]

DEFAULT_TIMEOUT_DELAY = 30.0
_SLOW_CHUNKS = 6
_OK_CHUNKS = 4

_ANTHROPIC_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
}
_BEDROCK_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
}
_THINKING = "The user asked something; let me think it over."  # Anthropic's thinking text
_TITAN_DIMENSIONS = (256, 512, 1024)  # the sizes Titan Text Embeddings V2 accepts
_TITAN_DEFAULT_DIMENSION = 1024


@dataclass(frozen=True)
class FakeToolCall:
    """A tool call a fake answer makes: `arguments` is JSON text, streamed in pieces."""

    name: str
    arguments: str = "{}"
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")


@dataclass
class Behaviour:
    """What one request to a model gets. `delay` is in seconds (see the module's docs)."""

    kind: Kind = "ok"
    text: str = "Hello from the fake upstream."
    prompt_tokens: int = 20
    completion_tokens: int = 7
    delay: float = 0.0
    finish: Finish = "stop"
    # Tool calls the answer makes, after its text (if any), in each protocol's own shape and
    # streaming pieces; a behaviour with calls finishes with "tool_calls" (tool_use).
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    # Usage details as each protocol reports them (OpenAI: prompt/completion token details;
    # Anthropic: cache_read/cache_creation input tokens; Bedrock: cacheRead/cacheWrite).
    cached_read_tokens: int = 0
    cached_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        if self.tool_calls and self.finish == "stop":
            self.finish = "tool_calls"
        if self.kind not in get_args(Kind):
            raise ValueError(f"unknown behaviour kind {self.kind!r}")
        if self.finish not in get_args(Finish):
            raise ValueError(f"unknown finish {self.finish!r}")


@dataclass
class RecordedRequest:
    """One request as the fake received it (recorded before auth or validation)."""

    protocol: Protocol
    path: str
    model: str | None
    headers: dict[str, str]
    json: Any
    stream: bool
    raw_path: str = ""
    received_at: float = field(default_factory=time.monotonic)


# --------------------------------------------------------------------------- wire helpers


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _sse_data(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _sse_event(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


def _event_stream_headers(headers: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", 7, len(raw_value)) + raw_value  # 7 = string
    return bytes(out)


def event_stream_frame(
    headers: Mapping[str, str], payload: bytes, *, bad_crc: bool = False
) -> bytes:
    """One AWS event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    encoded = _event_stream_headers(headers)
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    crc = zlib.crc32(message)
    if bad_crc:
        crc ^= 0xFFFFFFFF
    return message + struct.pack(">I", crc)


def _bedrock_event(event_type: str, payload: Any, *, bad_crc: bool = False) -> bytes:
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return event_stream_frame(headers, _dumps(payload), bad_crc=bad_crc)


def split_text(text: str, parts: int) -> list[str]:
    """Split `text` into about `parts` pieces on word boundaries (spaces kept), at least 3.

    The pieces concatenate to `text` exactly. Text too short for 3 pieces gives fewer.
    """
    if not text:
        return []
    words = [w for w in re.split(r"(?<=\s)(?=\S)", text) if w]
    if len(words) < 3:
        size = max(1, math.ceil(len(text) / 3))
        return [text[i : i + size] for i in range(0, len(text), size)]
    parts = max(3, min(parts, len(words)))
    base, extra = divmod(len(words), parts)
    pieces: list[str] = []
    start = 0
    for i in range(parts):
        end = start + base + (1 if i < extra else 0)
        pieces.append("".join(words[start:end]))
        start = end
    return pieces


def rerank_score(query: str, document: str) -> float:
    """The fake rerankers' relevance: the share of the query's words the document holds, a
    shorter document first among equals. Deterministic, so tests can predict the order."""
    words = set(re.findall(r"\w+", query.lower()))
    held = set(re.findall(r"\w+", document.lower()))
    share = len(words & held) / max(len(words), 1)
    return round(share + 0.001 / (1 + len(held)), 6)


def embedding_vector(item: str, dim: int) -> list[float]:
    """The deterministic, L2-normalised vector the fake returns for `item`."""
    values: list[float] = []
    counter = 0
    while len(values) < dim:
        digest = hashlib.sha256(f"{counter}:{item}".encode()).digest()
        for i in range(0, len(digest), 4):
            (number,) = struct.unpack(">I", digest[i : i + 4])
            values.append(number / 2**31 - 1.0)
        counter += 1
    values = values[:dim]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _sleep_unless_disconnected(seconds: float, receive: Receive) -> bool:
    """Sleeps `seconds`; returns True early if the client went away meanwhile."""
    watcher = asyncio.ensure_future(_until_disconnect(receive))
    try:
        done, _ = await asyncio.wait({watcher}, timeout=seconds)
    finally:
        watcher.cancel()
    return bool(done)


class _AbandonableStream(StreamingResponse):
    """A streaming response that notices a client disconnect and stops producing at once.

    uvicorn silently drops sends after a disconnect, so the stream watches `receive()` for
    ``http.disconnect`` alongside producing; whichever ends first decides.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        media_type: str,
        on_abandon: Callable[[], None],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._on_abandon = on_abandon

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def produce() -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in self.body_iterator:
                data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        producer = asyncio.ensure_future(produce())
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        try:
            done, _ = await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not producer.done():
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer
        if producer in done and not producer.cancelled():
            error = producer.exception()
            if error is None:
                return
            if not isinstance(error, OSError):
                raise error
        self._on_abandon()


# --------------------------------------------------------------------------- the server


class FakeUpstream:
    """A loopback server faking the OpenAI, Anthropic and Bedrock Converse APIs.

    Use as a context manager, or call `start()` / `stop()`. Thread-safe: the app runs on
    the server thread's event loop, tests read and script from theirs.
    """

    def __init__(self, embedding_dim: int = 8) -> None:
        self.embedding_dim = embedding_dim
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Behaviour]] = {}
        self._requests: list[RecordedRequest] = []
        self._cancelled: list[str] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai_chat, methods=["POST"]),
                Route("/v1/embeddings", self._openai_embeddings, methods=["POST"]),
                Route("/v1/models", self._openai_models, methods=["GET"]),
                Route("/v1/messages", self._anthropic_messages, methods=["POST"]),
                Route(
                    "/model/{model_id:path}/converse-stream",
                    self._bedrock_converse_stream,
                    methods=["POST"],
                ),
                Route("/model/{model_id:path}/converse", self._bedrock_converse, methods=["POST"]),
                Route("/model/{model_id:path}/invoke", self._bedrock_invoke, methods=["POST"]),
                Route("/v1/rerank", self._cohere_rerank, methods=["POST"]),
                Route("/rerank", self._bedrock_rerank, methods=["POST"]),
            ]
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("FakeUpstream is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-upstream", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(5)
                sock.close()
                raise RuntimeError("FakeUpstream did not start within 10 s")
            time.sleep(0.01)
        self._server, self._thread, self._port = server, thread, port

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        self._server = self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def script(self, model: str, *behaviours: Behaviour) -> None:
        """Queue behaviours for `model`, one consumed per request; then `Behaviour()`."""
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(behaviours)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def cancelled(self) -> list[str]:
        """Models whose response the client abandoned before it was complete (a snapshot).

        A streaming response cut off mid-stream, or a "timeout"/"slow" wait the client gave up.
        """
        with self._lock:
            return list(self._cancelled)

    def count(self, model: str) -> int:
        with self._lock:
            return sum(1 for r in self._requests if r.model == model)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._requests.clear()
            self._cancelled.clear()

    def embed(self, text: str, dim: int | None = None) -> list[float]:
        """The vector ``/v1/embeddings`` returns for `text` (as floats, before base64)."""
        return embedding_vector(text, dim or self.embedding_dim)

    def _next(self, model: str) -> Behaviour:
        with self._lock:
            queue = self._scripts.get(model)
            if queue:
                return queue.popleft()
        return Behaviour()

    def _abandoned(self, model: str) -> Callable[[], None]:
        def record() -> None:
            with self._lock:
                self._cancelled.append(model)

        return record

    async def _record(
        self, protocol: Protocol, request: Request, model_from_path: str | None = None
    ) -> tuple[RecordedRequest, bool]:
        """Reads the body and records the request; returns it and whether the JSON parsed."""
        raw = await request.body()
        body: Any = None
        parsed = True
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            parsed = False
        if model_from_path is not None:
            model: str | None = model_from_path
        elif isinstance(body, dict) and isinstance(body.get("model"), str):
            model = body["model"]
        else:
            model = None
        if protocol == "bedrock":
            stream = request.url.path.endswith("/converse-stream")
        else:
            stream = isinstance(body, dict) and bool(body.get("stream"))
        recorded = RecordedRequest(
            protocol=protocol,
            path=request.url.path,
            model=model,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=body,
            stream=stream,
            raw_path=request.scope.get("raw_path", b"").decode("latin-1"),
        )
        with self._lock:
            self._requests.append(recorded)
        return recorded, parsed and (raw == b"" or isinstance(body, dict))

    async def _wait(self, behaviour: Behaviour, request: Request, model: str) -> bool:
        """Applies a "timeout" (or non-streaming "slow") wait; True if the client left."""
        if behaviour.kind == "timeout":
            seconds = behaviour.delay or DEFAULT_TIMEOUT_DELAY
        elif behaviour.kind == "slow":
            seconds = behaviour.delay
        else:
            return False
        if await _sleep_unless_disconnected(seconds, request.receive):
            self._abandoned(model)()
            return True
        return False

    @staticmethod
    def _pieces(behaviour: Behaviour) -> list[str]:
        if behaviour.kind != "slow":
            return split_text(behaviour.text, _OK_CHUNKS)
        chunks = split_text(behaviour.text, _SLOW_CHUNKS) or [behaviour.text]
        total = max(len(chunks), behaviour.completion_tokens)
        return [chunks[i % len(chunks)] for i in range(total)]

    # ------------------------------------------------------------------ OpenAI

    @staticmethod
    def _openai_error(
        status: int,
        message: str,
        error_type: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JSONResponse:
        body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
        return JSONResponse(body, status_code=status, headers=headers)

    @classmethod
    def _openai_auth(cls, request: Request) -> JSONResponse | None:
        if re.fullmatch(r"Bearer\s+\S+", request.headers.get("authorization", "").strip()):
            return None
        return cls._openai_error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
        )

    @classmethod
    def _openai_failure(cls, behaviour: Behaviour) -> Response | None:
        if behaviour.kind == "429":
            return cls._openai_error(
                429,
                "Rate limit reached for requests (fake upstream).",
                "rate_limit_error",
                code="rate_limit_exceeded",
                headers={"retry-after": "0"},
            )
        if behaviour.kind == "500":
            return cls._openai_error(
                500, "The server had an error while processing your request.", "server_error"
            )
        if behaviour.kind == "400":  # the request's fault, e.g. a prompt over the context
            return cls._openai_error(
                400,
                "This model's maximum context length is 8192 tokens (fake upstream).",
                "invalid_request_error",
                param="messages",
                code="context_length_exceeded",
            )
        return None

    async def _openai_chat(self, request: Request) -> Response:
        recorded, parsed = await self._record("openai", request)
        if (denied := self._openai_auth(request)) is not None:
            return denied
        body = recorded.json
        if not parsed or not isinstance(body, dict):
            return self._openai_error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if not isinstance(body.get("model"), str) or not body["model"]:
            return self._openai_error(
                400, "you must provide a model parameter", "invalid_request_error", param="model"
            )
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._openai_error(
                400,
                "'messages' must be a non-empty array.",
                "invalid_request_error",
                param="messages",
            )
        model: str = body["model"]
        behaviour = self._next(model)
        if (failure := self._openai_failure(behaviour)) is not None:
            return failure
        if await self._wait_before_answer(behaviour, request, model, recorded.stream):
            return Response(status_code=499)
        request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        headers = {"x-request-id": f"req_{uuid.uuid4().hex}"}
        top_logprobs = body.get("top_logprobs")
        # None: the request did not ask for logprobs; else how many alternatives per token.
        logprobs = (
            (top_logprobs if isinstance(top_logprobs, int) else 0)
            if body.get("logprobs") is True
            else None
        )
        if recorded.stream:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return _AbandonableStream(
                self._openai_chunks(behaviour, model, request_id, include_usage, logprobs),
                media_type="text/event-stream; charset=utf-8",
                on_abandon=self._abandoned(model),
                headers=headers,
            )
        if behaviour.kind == "malformed":
            return Response(b'{"choices": [', media_type="application/json", headers=headers)
        return JSONResponse(
            {
                "id": request_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": self._openai_message(behaviour),
                        "logprobs": self._openai_logprobs(self._pieces(behaviour), logprobs),
                        "finish_reason": behaviour.finish,
                    }
                ],
                "usage": self._openai_usage(behaviour),
                "system_fingerprint": None,
            },
            headers=headers,
        )

    async def _wait_before_answer(
        self, behaviour: Behaviour, request: Request, model: str, stream: bool
    ) -> bool:
        if behaviour.kind == "slow" and stream:
            return False  # slow streams sleep between chunks instead
        return await self._wait(behaviour, request, model)

    @staticmethod
    def _openai_logprobs(pieces: list[str], top: int | None) -> dict[str, Any] | None:
        """OpenAI's `logprobs` object for the tokens `pieces` (None when not asked for): each
        token with its log probability, UTF-8 bytes and `top` alternatives."""
        if top is None:
            return None
        content = []
        for i, token in enumerate(pieces):
            logprob = -0.01 * (i + 1)
            alternatives = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
            alternatives += [
                {"token": f"alt{n}", "logprob": logprob - n, "bytes": list(f"alt{n}".encode())}
                for n in range(1, top)
            ]
            content.append(
                {
                    "token": token,
                    "logprob": logprob,
                    "bytes": list(token.encode()),
                    "top_logprobs": alternatives[:top],
                }
            )
        return {"content": content, "refusal": None}

    @staticmethod
    def _openai_message(behaviour: Behaviour) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": behaviour.text,
            "refusal": None,
        }
        if behaviour.tool_calls:
            # OpenAI sends null content beside tool calls when the model wrote no text.
            message["content"] = behaviour.text or None
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in behaviour.tool_calls
            ]
        return message

    @staticmethod
    def _openai_usage(behaviour: Behaviour) -> dict[str, Any]:
        return {
            "prompt_tokens": behaviour.prompt_tokens,
            "completion_tokens": behaviour.completion_tokens,
            "total_tokens": behaviour.prompt_tokens + behaviour.completion_tokens,
            "prompt_tokens_details": {
                "cached_tokens": behaviour.cached_read_tokens,
                "cache_write_tokens": behaviour.cached_write_tokens,
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": behaviour.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    async def _openai_chunks(
        self,
        behaviour: Behaviour,
        model: str,
        request_id: str,
        include_usage: bool,
        logprobs: int | None = None,
    ) -> AsyncIterator[bytes]:
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
            obj: dict[str, Any] = {
                "id": request_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": choices,
            }
            if include_usage:
                obj["usage"] = usage
            return _sse_data(obj)

        def choice(
            delta: dict[str, Any], finish: str | None = None, probs: Any = None
        ) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "logprobs": probs, "finish_reason": finish}]

        yield chunk(choice({"role": "assistant", "content": "", "refusal": None}))
        if behaviour.kind == "malformed":
            yield b'data: {"id":"' + request_id.encode() + b'","choices": [{"delta": {"con\n\n'
            return
        for i, piece in enumerate(self._pieces(behaviour)):
            if i and behaviour.kind == "slow":
                await asyncio.sleep(behaviour.delay)
            yield chunk(choice({"content": piece}, probs=self._openai_logprobs([piece], logprobs)))
        for index, call in enumerate(behaviour.tool_calls):
            # As OpenAI streams a call: its id and name with empty arguments, then the
            # arguments JSON in pieces keyed by the call's index alone.
            start = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            yield chunk(choice({"tool_calls": [start]}))
            for piece in split_text(call.arguments, _OK_CHUNKS):
                yield chunk(
                    choice({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                )
        yield chunk(choice({}, behaviour.finish))
        if include_usage:
            yield chunk([], self._openai_usage(behaviour))
        yield b"data: [DONE]\n\n"

    async def _openai_embeddings(self, request: Request) -> Response:
        recorded, parsed = await self._record("openai", request)
        if (denied := self._openai_auth(request)) is not None:
            return denied
        body = recorded.json
        if not parsed or not isinstance(body, dict):
            return self._openai_error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if not isinstance(body.get("model"), str) or not body["model"]:
            return self._openai_error(
                400, "you must provide a model parameter", "invalid_request_error", param="model"
            )
        raw_input = body.get("input")
        if isinstance(raw_input, str) or (
            isinstance(raw_input, list) and raw_input and isinstance(raw_input[0], int)
        ):
            items: list[Any] = [raw_input]
        elif isinstance(raw_input, list) and raw_input:
            items = raw_input
        else:
            return self._openai_error(
                400,
                "'input' must be a non-empty string or array.",
                "invalid_request_error",
                param="input",
            )
        dimensions = body.get("dimensions")
        dim = dimensions if isinstance(dimensions, int) and dimensions > 0 else self.embedding_dim
        encoding = body.get("encoding_format") or "float"
        model: str = body["model"]
        behaviour = self._next(model)
        if (failure := self._openai_failure(behaviour)) is not None:
            return failure
        if await self._wait(behaviour, request, model):
            return Response(status_code=499)
        if behaviour.kind == "malformed":
            return Response(b'{"object": "list", "data": [', media_type="application/json")
        data = []
        for index, item in enumerate(items):
            vector = embedding_vector(item if isinstance(item, str) else _dumps(item).decode(), dim)
            encoded: Any = vector
            if encoding == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {
                    "prompt_tokens": behaviour.prompt_tokens,
                    "total_tokens": behaviour.prompt_tokens,
                },
            }
        )

    async def _openai_models(self, request: Request) -> Response:
        await self._record("openai", request)
        if (denied := self._openai_auth(request)) is not None:
            return denied
        with self._lock:
            names = set(self._scripts) | {
                r.model for r in self._requests if r.protocol == "openai" and r.model
            }
        names |= {"gpt-4o-mini", "text-embedding-3-small"}
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 1700000000, "owned_by": "fake"}
                    for name in sorted(names)
                ],
            }
        )

    # ------------------------------------------------------------------ Anthropic

    @staticmethod
    def _anthropic_error(
        status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None
    ) -> JSONResponse:
        body = {"type": "error", "error": {"type": error_type, "message": message}}
        merged = {"request-id": f"req_{uuid.uuid4().hex[:24]}", **(headers or {})}
        return JSONResponse(body, status_code=status, headers=merged)

    async def _anthropic_messages(self, request: Request) -> Response:
        recorded, parsed = await self._record("anthropic", request)
        # The API takes the key as `x-api-key`, or as a Bearer token (what anthropic>=2 sends).
        bearer = re.fullmatch(r"Bearer\s+\S+", request.headers.get("authorization", "").strip())
        if not request.headers.get("x-api-key") and not bearer:
            return self._anthropic_error(
                401, "authentication_error", "x-api-key header is required"
            )
        if not request.headers.get("anthropic-version"):
            return self._anthropic_error(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        body = recorded.json
        if not parsed or not isinstance(body, dict):
            return self._anthropic_error(
                400, "invalid_request_error", "There was an issue with your request body."
            )
        for name, kind in (("model", str), ("max_tokens", int), ("messages", list)):
            if not isinstance(body.get(name), kind) or isinstance(body.get(name), bool):
                return self._anthropic_error(
                    400, "invalid_request_error", f"{name}: Field required"
                )
        model: str = body["model"]
        behaviour = self._next(model)
        if behaviour.kind == "429":
            return self._anthropic_error(
                429,
                "rate_limit_error",
                "Number of requests has exceeded your rate limit (fake upstream).",
                headers={"retry-after": "0"},
            )
        if behaviour.kind == "500":
            return self._anthropic_error(500, "api_error", "Internal server error")
        if await self._wait_before_answer(behaviour, request, model, recorded.stream):
            return Response(status_code=499)
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        blocks, stop_reason = self._anthropic_content(behaviour, body)
        if recorded.stream:
            return _AbandonableStream(
                self._anthropic_events(behaviour, model, message_id, blocks, stop_reason),
                media_type="text/event-stream; charset=utf-8",
                on_abandon=self._abandoned(model),
                headers=headers,
            )
        if behaviour.kind == "malformed":
            return Response(
                b'{"id": "' + message_id.encode() + b'", "content": [',
                media_type="application/json",
                headers=headers,
            )
        return JSONResponse(
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [block for block, _ in blocks],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": self._anthropic_usage(behaviour, self._anthropic_output_usage(behaviour)),
            },
            headers=headers,
        )

    @staticmethod
    def _anthropic_usage(behaviour: Behaviour, output: dict[str, Any]) -> dict[str, Any]:
        # Anthropic counts cached input apart: input_tokens is only the uncached rest.
        cached = behaviour.cached_read_tokens + behaviour.cached_write_tokens
        return {
            "input_tokens": max(0, behaviour.prompt_tokens - cached),
            "cache_creation_input_tokens": behaviour.cached_write_tokens,
            "cache_read_input_tokens": behaviour.cached_read_tokens,
            **output,
        }

    @staticmethod
    def _anthropic_output_usage(behaviour: Behaviour) -> dict[str, Any]:
        """The answer's output tokens, with the thinking among them (`output_tokens_details`)."""
        usage: dict[str, Any] = {"output_tokens": behaviour.completion_tokens}
        if behaviour.reasoning_tokens:
            usage["output_tokens_details"] = {"thinking_tokens": behaviour.reasoning_tokens}
        return usage

    @staticmethod
    def _anthropic_content(
        behaviour: Behaviour, body: dict[str, Any]
    ) -> tuple[list[tuple[dict[str, Any], str]], str]:
        """The answer's content blocks, each with the JSON text a stream sends as its
        input, and the stop reason.

        A request that forces a tool (`tool_choice` type "tool") and a behaviour without
        calls is answered by that tool alone, as Anthropic does: its input is the behaviour's
        text when that is a JSON object, else {"text": text}.
        """
        calls = [(call.id, call.name, call.arguments) for call in behaviour.tool_calls]
        text, stop_reason = behaviour.text, _ANTHROPIC_STOP[behaviour.finish]
        choice = body.get("tool_choice")
        if not calls and isinstance(choice, dict) and choice.get("type") == "tool":
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            arguments = text if isinstance(value, dict) else json.dumps({"text": text})
            calls = [(f"toolu_{uuid.uuid4().hex[:24]}", str(choice.get("name")), arguments)]
            text = ""
            if behaviour.finish == "stop":
                stop_reason = "tool_use"
        blocks: list[tuple[dict[str, Any], str]] = []
        if behaviour.reasoning_tokens:
            # Extended thinking comes first, signed; its tokens are part of output_tokens.
            thinking = {"type": "thinking", "thinking": _THINKING, "signature": "c2lnbmF0dXJl"}
            blocks.append((thinking, ""))
        if text or not calls:
            blocks.append(({"type": "text", "text": text}, ""))
        for call_id, name, arguments in calls:
            block = {"type": "tool_use", "id": call_id, "name": name}
            blocks.append(({**block, "input": json.loads(arguments)}, arguments))
        return blocks, stop_reason

    @staticmethod
    def _json_pieces(arguments: str) -> list[str]:
        """`arguments` cut into (up to) 4 pieces anywhere, even inside a string, as
        Anthropic's input_json_delta events may be; the first piece is empty, as Anthropic's
        first one is."""
        size = max(1, math.ceil(len(arguments) / _OK_CHUNKS))
        return [""] + [arguments[i : i + size] for i in range(0, len(arguments), size)]

    async def _anthropic_events(
        self,
        behaviour: Behaviour,
        model: str,
        message_id: str,
        blocks: list[tuple[dict[str, Any], str]],
        stop_reason: str,
    ) -> AsyncIterator[bytes]:
        yield _sse_event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": self._anthropic_usage(behaviour, {"output_tokens": 1}),
                },
            },
        )
        empty = {"text": {"text": ""}, "thinking": {"thinking": "", "signature": ""}}
        for index, (block, arguments) in enumerate(blocks):
            # A block starts empty (a tool_use with input {}) and is filled by deltas.
            start = {**block, **empty.get(block["type"], {"input": {}})}
            yield _sse_event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            if index == 0:
                yield _sse_event("ping", {"type": "ping"})
                if behaviour.kind == "malformed":
                    yield b'event: content_block_delta\ndata: {"type": "content_block_delta", '
                    yield b'"ind\n\n'
                    return
            if block["type"] == "text":
                deltas = [{"type": "text_delta", "text": p} for p in self._pieces(behaviour)]
            elif block["type"] == "thinking":
                deltas = [
                    *({"type": "thinking_delta", "thinking": p} for p in split_text(_THINKING, 3)),
                    {"type": "signature_delta", "signature": block["signature"]},
                ]
            else:
                deltas = [
                    {"type": "input_json_delta", "partial_json": p}
                    for p in self._json_pieces(arguments)
                ]
            for i, delta in enumerate(deltas):
                if i and behaviour.kind == "slow":
                    await asyncio.sleep(behaviour.delay)
                yield _sse_event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            yield _sse_event("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": self._anthropic_output_usage(behaviour),
            },
        )
        yield _sse_event("message_stop", {"type": "message_stop"})

    # ------------------------------------------------------------------ Bedrock

    @staticmethod
    def _bedrock_error(
        status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None
    ) -> JSONResponse:
        merged = {
            "x-amzn-ErrorType": error_type,
            "x-amzn-RequestId": str(uuid.uuid4()),
            **(headers or {}),
        }
        return JSONResponse({"message": message}, status_code=status, headers=merged)

    @classmethod
    def _bedrock_unsigned(cls, request: Request) -> JSONResponse | None:
        if request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
            return None
        return cls._bedrock_error(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )

    @classmethod
    def _bedrock_failure(cls, behaviour: Behaviour) -> JSONResponse | None:
        if behaviour.kind == "429":
            return cls._bedrock_error(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
                headers={"Retry-After": "0"},
            )
        if behaviour.kind == "500":
            return cls._bedrock_error(
                500,
                "InternalServerException",
                "The server encountered an error processing your request.",
            )
        return None

    async def _bedrock_prepare(
        self, request: Request
    ) -> tuple[Response | None, RecordedRequest, Behaviour, float]:
        started = time.monotonic()
        model = str(request.path_params["model_id"])
        recorded, parsed = await self._record("bedrock", request, model_from_path=model)
        behaviour = Behaviour()
        if (denied := self._bedrock_unsigned(request)) is not None:
            return denied, recorded, behaviour, started
        body = recorded.json
        problem: str | None = None
        if not parsed or not isinstance(body, dict):
            problem = "Malformed input request, please reformat your input and try again."
        elif not isinstance(body.get("messages"), list) or not body["messages"]:
            problem = "A conversation must start with a user message. Try again."
        elif not model:
            problem = "The provided model identifier is invalid."
        else:
            problem = self._bedrock_conversation_problem(body)
        if problem is not None:
            return (
                self._bedrock_error(400, "ValidationException", problem),
                recorded,
                behaviour,
                started,
            )
        behaviour = self._forced_bedrock_tool(self._next(model), body)
        failure: Response | None = self._bedrock_failure(behaviour)
        if failure is None and await self._wait_before_answer(
            behaviour, request, model, recorded.stream
        ):
            failure = Response(status_code=499)
        return failure, recorded, behaviour, started

    @staticmethod
    def _forced_bedrock_tool(behaviour: Behaviour, body: dict[str, Any]) -> Behaviour:
        """A request that forces a tool (toolChoice {"tool": {"name"}}) and a behaviour without
        calls is answered by that tool alone, as Bedrock does: its input is the behaviour's
        text when that is a JSON object, else {"text": text}."""
        config = body.get("toolConfig")
        choice = config.get("toolChoice") if isinstance(config, dict) else None
        forced = choice.get("tool") if isinstance(choice, dict) else None
        if behaviour.tool_calls or not isinstance(forced, dict):
            return behaviour
        try:
            value = json.loads(behaviour.text)
        except ValueError:
            value = None
        arguments = (
            behaviour.text if isinstance(value, dict) else json.dumps({"text": behaviour.text})
        )
        call = FakeToolCall(
            str(forced.get("name")), arguments, id=f"tooluse_{uuid.uuid4().hex[:20]}"
        )
        finish: Finish = "tool_calls" if behaviour.finish == "stop" else behaviour.finish
        return dataclasses.replace(behaviour, text="", tool_calls=[call], finish=finish)

    @staticmethod
    def _bedrock_conversation_problem(body: dict[str, Any]) -> str | None:
        """Two of Converse's own checks, in its words: roles alternate, and toolUse or
        toolResult blocks come with a toolConfig."""
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        roles = [m.get("role") for m in messages]
        if any(roles[i] == roles[i + 1] for i in range(len(roles) - 1)):
            return (
                "A conversation must alternate between user and assistant roles. Make sure "
                "the conversation alternates between user and assistant roles and try again."
            )
        blocks = [b for m in messages for b in m.get("content") or [] if isinstance(b, dict)]
        if "toolConfig" not in body and any("toolUse" in b or "toolResult" in b for b in blocks):
            return (
                "The toolConfig field must be defined when using toolUse and toolResult "
                "content blocks."
            )
        return None

    @staticmethod
    def _bedrock_usage(behaviour: Behaviour) -> dict[str, int]:
        # Bedrock's inputTokens leaves out the input read from or written to the prompt
        # cache (reported beside it); `prompt_tokens` is all of it, as OpenAI counts.
        read, written = behaviour.cached_read_tokens, behaviour.cached_write_tokens
        usage = {
            "inputTokens": max(0, behaviour.prompt_tokens - read - written),
            "outputTokens": behaviour.completion_tokens,
            "totalTokens": max(behaviour.prompt_tokens, read + written)
            + behaviour.completion_tokens,
        }
        if read or written:
            usage |= {"cacheReadInputTokens": read, "cacheWriteInputTokens": written}
        return usage

    @staticmethod
    def _bedrock_content(behaviour: Behaviour) -> list[dict[str, Any]]:
        """The answer's content blocks: its text (if any), then a toolUse block per call."""
        blocks: list[dict[str, Any]] = [{"text": behaviour.text}] if behaviour.text else []
        for call in behaviour.tool_calls:
            blocks.append(
                {
                    "toolUse": {
                        "toolUseId": call.id,
                        "name": call.name,
                        "input": json.loads(call.arguments or "{}"),
                    }
                }
            )
        return blocks

    async def _bedrock_converse(self, request: Request) -> Response:
        failure, _, behaviour, started = await self._bedrock_prepare(request)
        if failure is not None:
            return failure
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        if behaviour.kind == "malformed":
            return Response(
                b'{"output": {"message": {', media_type="application/json", headers=headers
            )
        return JSONResponse(
            {
                "output": {
                    "message": {"role": "assistant", "content": self._bedrock_content(behaviour)}
                },
                "stopReason": _BEDROCK_STOP[behaviour.finish],
                "usage": self._bedrock_usage(behaviour),
                "metrics": {"latencyMs": max(1, int((time.monotonic() - started) * 1000))},
            },
            headers=headers,
        )

    async def _bedrock_converse_stream(self, request: Request) -> Response:
        failure, recorded, behaviour, started = await self._bedrock_prepare(request)
        if failure is not None:
            return failure
        return _AbandonableStream(
            self._bedrock_events(behaviour, started),
            media_type="application/vnd.amazon.eventstream",
            on_abandon=self._abandoned(str(recorded.model)),
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )

    async def _bedrock_events(self, behaviour: Behaviour, started: float) -> AsyncIterator[bytes]:
        yield _bedrock_event("messageStart", {"role": "assistant"})
        if behaviour.kind == "malformed":
            yield _bedrock_event(
                "contentBlockDelta",
                {"contentBlockIndex": 0, "delta": {"text": behaviour.text}},
                bad_crc=True,
            )
            return
        for i, piece in enumerate(self._pieces(behaviour)):
            if i and behaviour.kind == "slow":
                await asyncio.sleep(behaviour.delay)
            yield _bedrock_event(
                "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}
            )
        block = 0
        if behaviour.text or not behaviour.tool_calls:
            yield _bedrock_event("contentBlockStop", {"contentBlockIndex": 0})
            block = 1
        # A toolUse block as ConverseStream sends one: a start with its id and name (text
        # blocks have none), its input JSON text in pieces, a stop.
        for index, call in enumerate(behaviour.tool_calls, start=block):
            yield _bedrock_event(
                "contentBlockStart",
                {
                    "contentBlockIndex": index,
                    "start": {"toolUse": {"toolUseId": call.id, "name": call.name}},
                },
            )
            for piece in split_text(call.arguments, 3):
                yield _bedrock_event(
                    "contentBlockDelta",
                    {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}},
                )
            yield _bedrock_event("contentBlockStop", {"contentBlockIndex": index})
        yield _bedrock_event("messageStop", {"stopReason": _BEDROCK_STOP[behaviour.finish]})
        yield _bedrock_event(
            "metadata",
            {
                "usage": self._bedrock_usage(behaviour),
                "metrics": {"latencyMs": max(1, int((time.monotonic() - started) * 1000))},
            },
        )

    async def _bedrock_invoke(self, request: Request) -> Response:
        """InvokeModel as Amazon Titan Text Embeddings V2 answers it (the only model faked)."""
        model = str(request.path_params["model_id"])
        recorded, parsed = await self._record("bedrock", request, model_from_path=model)
        if (denied := self._bedrock_unsigned(request)) is not None:
            return denied
        body = recorded.json
        # Titan's own wording for a body that breaks its schema.
        problem: str | None = None
        if not parsed or not isinstance(body, dict):
            problem = "Malformed input request, please reformat your input and try again."
        elif not isinstance(body.get("inputText"), str):
            problem = (
                "Malformed input request: #/inputText: expected type: String, "
                "please reformat your input and try again."
            )
        elif not body["inputText"]:
            problem = (
                "Malformed input request: #/inputText: expected minLength: 1, actual: 0, "
                "please reformat your input and try again."
            )
        elif body.get("dimensions", _TITAN_DEFAULT_DIMENSION) not in _TITAN_DIMENSIONS:
            problem = (
                f"Malformed input request: #/dimensions: {body['dimensions']} is not a valid "
                "enum value, please reformat your input and try again."
            )
        if problem is not None:
            return self._bedrock_error(400, "ValidationException", problem)
        behaviour = self._next(model)
        if (failure := self._bedrock_failure(behaviour)) is not None:
            return failure
        if await self._wait(behaviour, request, model):
            return Response(status_code=499)
        headers = {
            "x-amzn-RequestId": str(uuid.uuid4()),
            "X-Amzn-Bedrock-Input-Token-Count": str(behaviour.prompt_tokens),
            "X-Amzn-Bedrock-Invocation-Latency": "1",
        }
        if behaviour.kind == "malformed":
            return Response(b'{"embedding": [', media_type="application/json", headers=headers)
        dim = int(body.get("dimensions", _TITAN_DEFAULT_DIMENSION))
        return JSONResponse(
            {
                "embedding": embedding_vector(body["inputText"], dim),
                "inputTextTokenCount": behaviour.prompt_tokens,
            },
            headers=headers,
        )

    # ------------------------------------------------------------------ rerankers

    async def _cohere_rerank(self, request: Request) -> Response:
        """Cohere's /v2/rerank (and Jina's, vLLM's): {model, query, documents, top_n}."""
        recorded, parsed = await self._record("cohere", request)
        if not re.fullmatch(r"Bearer\s+\S+", request.headers.get("authorization", "").strip()):
            return JSONResponse({"message": "no api key supplied"}, status_code=401)
        body = recorded.json
        if not parsed or not isinstance(body, dict):
            return JSONResponse({"message": "invalid request: body is not JSON"}, status_code=400)
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(body.get("model"), str) or not isinstance(query, str):
            return JSONResponse({"message": "invalid request: model and query are required"}, 400)
        if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            return JSONResponse({"message": "invalid request: documents must be strings"}, 400)
        behaviour = self._next(body["model"])
        if behaviour.kind in ("429", "500"):
            status = int(behaviour.kind)
            return JSONResponse({"message": f"fake failure {status}"}, status_code=status)
        if await self._wait(behaviour, request, body["model"]):
            return Response(status_code=499)
        if behaviour.kind == "malformed":
            return Response(b'{"results": [{"index": 0', media_type="application/json")
        top_n = body.get("top_n") or len(documents)
        scored = sorted(
            ((rerank_score(query, d), i) for i, d in enumerate(documents)), key=lambda x: -x[0]
        )
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "results": [{"index": i, "relevance_score": s} for s, i in scored[:top_n]],
                "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
            }
        )

    async def _bedrock_rerank(self, request: Request) -> Response:
        """Bedrock Agent Runtime's Rerank: queries, inline text sources, a model ARN."""
        recorded, _ = await self._record("bedrock", request)
        if (denied := self._bedrock_unsigned(request)) is not None:
            return denied
        body = recorded.json
        try:
            query = body["queries"][0]["textQuery"]["text"]
            documents = [s["inlineDocumentSource"]["textDocument"]["text"] for s in body["sources"]]
            config = body["rerankingConfiguration"]["bedrockRerankingConfiguration"]
            arn = config["modelConfiguration"]["modelArn"]
            wanted = int(config.get("numberOfResults", len(documents)))
        except (KeyError, IndexError, TypeError, ValueError):
            return self._bedrock_error(400, "ValidationException", "Malformed rerank request.")
        model = str(arn).rpartition("foundation-model/")[2]
        behaviour = self._next(model)
        if (failure := self._bedrock_failure(behaviour)) is not None:
            return failure
        scored = sorted(
            ((rerank_score(query, d), i) for i, d in enumerate(documents)), key=lambda x: -x[0]
        )
        return JSONResponse(
            {"results": [{"index": i, "relevanceScore": s} for s, i in scored[:wanted]]},
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )
