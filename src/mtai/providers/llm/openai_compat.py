"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, LM Studio, any base_url).

The canonical conversation is OpenAI's own model, so nearly everything is forwarded as is;
the two exceptions are spelled out where they happen (images inside tool results, and
`max_tokens`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from mtai.providers.llm.base import (
    Completion,
    CompletionRequest,
    Delta,
    StreamEnd,
    StreamEvent,
    ToolCallDelta,
    Usage,
)
from mtai.providers.llm.capabilities import FEATURES, Support, table
from mtai.providers.llm.conversation import (
    Generation,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolResult,
)
from mtai.providers.llm.http import malformed, raise_for_status, transport_errors
from mtai.providers.llm.sse import events

# Everything is OpenAI's own vocabulary except top_k, which the Chat Completions API lacks.
SUPPORT = table(
    **{f.replace(".", "__"): Support.NATIVE for f in FEATURES if f != "top_k"},
)


# -- request --------------------------------------------------------------------------------


def _image(part: ImagePart) -> dict[str, Any]:
    image: dict[str, Any] = {"url": part.url}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _content(parts: list[TextPart | ImagePart]) -> str | list[dict[str, Any]]:
    """A string when the parts are all text (what every compatible server accepts), else
    OpenAI's array of content parts."""
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return [
        {"type": "text", "text": p.text} if isinstance(p, TextPart) else _image(p) for p in parts
    ]


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _result_text(result: ToolResult) -> str:
    # OpenAI's tool message has no error flag: the model learns of the failure from the text.
    return f"Error: {result.text}" if result.is_error else result.text


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    # A tool message holds text only, and the tool messages answering one assistant turn must
    # follow it without a break: images a tool returned go in one user message after them.
    pending_images: list[dict[str, Any]] = []

    def flush_images() -> None:
        if pending_images:
            out.append({"role": "user", "content": list(pending_images)})
            pending_images.clear()

    for message in messages:
        results = message.tool_results
        if results:
            for result in results:
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": result.call_id,
                        "content": _result_text(result),
                    }
                )
                images = [p for p in result.content if isinstance(p, ImagePart)]
                if images:
                    pending_images.append(
                        {"type": "text", "text": f"Images returned by tool call {result.call_id}:"}
                    )
                    pending_images.extend(_image(p) for p in images)
            continue
        flush_images()
        visible = [p for p in message.parts if isinstance(p, TextPart | ImagePart)]
        if message.role == "assistant":
            calls = message.tool_calls
            # Assistant content is text only in OpenAI's model; no text beside calls is null.
            text = message.content
            entry: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                entry["tool_calls"] = [_tool_call(c) for c in calls]
            elif not text:
                entry["content"] = ""
            out.append(entry)
        elif message.role == "system":
            out.append({"role": "system", "content": message.content})
        else:
            out.append({"role": message.role, "content": _content(visible)})
    flush_images()
    return out


def _tools(generation: Generation) -> list[dict[str, Any]]:
    tools = []
    for spec in generation.tools:
        function: dict[str, Any] = {"name": spec.name, "parameters": dict(spec.parameters)}
        if spec.description is not None:
            function["description"] = spec.description
        if spec.strict is not None:
            function["strict"] = spec.strict
        tools.append({"type": "function", "function": function})
    return tools


def _generation(generation: Generation) -> dict[str, Any]:
    g = generation
    body: dict[str, Any] = {}
    for name, value in (
        ("temperature", g.temperature),
        ("top_p", g.top_p),
        ("seed", g.seed),
        ("presence_penalty", g.presence_penalty),
        ("frequency_penalty", g.frequency_penalty),
        ("user", g.user),
        ("parallel_tool_calls", g.parallel_tool_calls),
    ):
        if value is not None:
            body[name] = value
    if g.stop:
        body["stop"] = list(g.stop)
    if g.logit_bias is not None:
        body["logit_bias"] = dict(g.logit_bias)
    if g.logprobs or g.top_logprobs is not None:
        body["logprobs"] = True  # OpenAI rejects top_logprobs without it
        if g.top_logprobs is not None:
            body["top_logprobs"] = g.top_logprobs
    if g.tools:
        body["tools"] = _tools(g)
    if g.tool_choice is not None:
        choice = g.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode == "tool"
            else choice.mode
        )
    rf = g.response_format
    if rf is not None and rf.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif rf is not None and rf.type == "json_schema":
        schema: dict[str, Any] = {
            "name": rf.name or "response",  # required by OpenAI
            "schema": dict(rf.schema or {}),
        }
        if rf.description is not None:
            schema["description"] = rf.description
        if rf.strict is not None:
            schema["strict"] = rf.strict
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    return body


def request_body(request: CompletionRequest, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": _messages(request.messages),
        # `max_tokens`, not `max_completion_tokens`: every compatible server (vLLM, Ollama,
        # LM Studio, llama.cpp's server) and OpenAI's non-reasoning models take it, while
        # several servers ignore or reject the newer name. OpenAI's reasoning models (o-series)
        # answer 400 to it; they would need a per-model switch in the catalog.
        "max_tokens": request.max_tokens,
        "stream": stream,
    }
    body.update(_generation(request.generation))
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


# -- response -------------------------------------------------------------------------------


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _usage(body: Any) -> Usage | None:
    if not isinstance(body, Mapping):
        return None
    # Either details object may be missing or null (older servers, vLLM, Ollama).
    prompt = body.get("prompt_tokens_details")
    prompt = prompt if isinstance(prompt, Mapping) else {}
    completion = body.get("completion_tokens_details")
    completion = completion if isinstance(completion, Mapping) else {}
    return Usage(
        _count(body.get("prompt_tokens")),
        _count(body.get("completion_tokens")),
        cached_read_tokens=_count(prompt.get("cached_tokens")),
        cached_write_tokens=_count(prompt.get("cache_write_tokens")),
        reasoning_tokens=_count(completion.get("reasoning_tokens")),
    )


def _arguments(value: Any) -> str:
    """Arguments JSON text; a few compatible servers send the object itself."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


# Finish reasons in the canonical (OpenAI's) words; `function_call` is the legacy name of
# tool_calls. Anything else a compatible server invents is an ordinary stop.
_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def _finish(value: Any) -> str:
    return _FINISH.get(value, "stop") if isinstance(value, str) else "stop"


def _new_call_id() -> str:
    # Some compatible servers leave the id out; a call needs one for its result to name it.
    return f"call_{uuid.uuid4().hex[:24]}"


def _tool_calls(message: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    calls = []
    for raw in message.get("tool_calls") or []:
        function = raw["function"]
        calls.append(
            ToolCall(
                id=raw.get("id") or _new_call_id(),
                name=str(function["name"]),
                arguments=_arguments(function.get("arguments")) or "{}",
            )
        )
    return tuple(calls)


def _text(message: Mapping[str, Any]) -> str:
    # A structured-output refusal comes as `refusal` with no content: the canonical result
    # has no refusal field, so its words are the answer's text rather than lost.
    return str(message.get("content") or message.get("refusal") or "")


class _ToolCallIndexes:
    """Maps the upstream's tool-call keys in a stream to 0-based canonical indexes."""

    def __init__(self) -> None:
        self._known: dict[Any, int] = {}
        self._last: Any = None

    def piece(self, raw: Mapping[str, Any]) -> ToolCallDelta:
        function = raw.get("function") or {}
        index = raw.get("index")
        # OpenAI keys pieces by `index`; servers that omit it start a call with its id.
        if isinstance(index, int) and not isinstance(index, bool):
            key: Any = ("index", index)
        elif raw.get("id"):
            key = ("id", raw["id"])
        else:
            key = self._last
        self._last = key
        arguments = _arguments(function.get("arguments"))
        if key in self._known:
            return ToolCallDelta(self._known[key], arguments=arguments)
        self._known[key] = len(self._known)
        return ToolCallDelta(
            self._known[key],
            id=raw.get("id") or _new_call_id(),
            name=str(function.get("name") or ""),
            arguments=arguments,
        )


class OpenAICompatProvider:
    name = "openai"
    support = SUPPORT

    def __init__(self, base_url: str, api_key: str | None, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client

    async def complete(self, request: CompletionRequest) -> Completion:
        with transport_errors():
            response = await self.client.post(
                f"{self.base_url}/chat/completions",
                json=request_body(request, False),
                headers=self.headers,
            )
            await raise_for_status(response)
        try:
            body = response.json()
            choice = body["choices"][0]
            message = choice["message"]
            return Completion(
                text=_text(message),
                usage=_usage(body.get("usage")),
                finish_reason=_finish(choice.get("finish_reason")),
                tool_calls=_tool_calls(message),
                logprobs=choice.get("logprobs"),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise malformed(self.name, exc) from exc

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        finish, usage = "stop", None
        calls = _ToolCallIndexes()
        with transport_errors():
            async with self.client.stream(
                "POST",
                f"{self.base_url}/chat/completions",
                json=request_body(request, True),
                headers=self.headers,
            ) as response:
                await raise_for_status(response)
                async for _event, data in events(response):
                    if data.strip() == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                        usage = _usage(chunk.get("usage")) or usage
                        pieces: list[StreamEvent] = []
                        for choice in chunk.get("choices") or []:
                            delta = choice.get("delta") or {}
                            text = _text(delta)
                            if text:
                                logprobs = choice.get("logprobs")
                                entries = (
                                    logprobs.get("content")
                                    if isinstance(logprobs, Mapping)
                                    else None
                                )
                                pieces.append(Delta(text, entries))
                            pieces += [calls.piece(raw) for raw in delta.get("tool_calls") or []]
                            if choice.get("finish_reason"):
                                finish = _finish(choice["finish_reason"])
                    except (ValueError, AttributeError, TypeError) as exc:
                        raise malformed(self.name, exc) from exc
                    for piece in pieces:
                        yield piece
        yield StreamEnd(usage, finish)

    async def aclose(self) -> None:
        """The shared HTTP client is owned by the registry."""
