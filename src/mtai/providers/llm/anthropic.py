"""Anthropic Messages API: the canonical conversation in Anthropic's content blocks.

Tool calls travel as `tool_use` blocks, tool results as `tool_result` blocks of a user
message, images as image blocks. Anthropic has no response format: a JSON answer is asked for
by forcing a tool whose input schema is the wanted schema, and that tool's input comes back as
the answer's text.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from mtai.providers.llm.base import (
    Completion,
    CompletionRequest,
    Delta,
    StreamEnd,
    StreamEvent,
    ToolCallDelta,
    UpstreamError,
    Usage,
    redact,
)
from mtai.providers.llm.capabilities import Support, table
from mtai.providers.llm.conversation import (
    Generation,
    ImagePart,
    Message,
    Part,
    TextPart,
    ToolCall,
)
from mtai.providers.llm.http import malformed, raise_for_status, transport_errors
from mtai.providers.llm.sse import events

API_VERSION = "2023-06-01"
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# The forced tool that carries a JSON answer when the response format names no usable name.
JSON_TOOL = "json_response"
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# The image types Anthropic reads; anything else is refused before the call, in our words.
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

SUPPORT = table(
    # OpenAI's 0-2 range is cut to Anthropic's 0-1 (what OpenAI clients send, said as such).
    temperature=Support.TRANSLATED,
    top_p=Support.NATIVE,
    top_k=Support.NATIVE,
    stop=Support.NATIVE,
    user=Support.TRANSLATED,
    tools=Support.TRANSLATED,
    tool_choice__auto=Support.TRANSLATED,
    tool_choice__none=Support.TRANSLATED,
    tool_choice__required=Support.TRANSLATED,
    tool_choice__tool=Support.TRANSLATED,
    parallel_tool_calls=Support.TRANSLATED,
    tool_messages=Support.TRANSLATED,
    response_format__json_object=Support.TRANSLATED,
    response_format__json_schema=Support.TRANSLATED,
    image_data=Support.TRANSLATED,
    image_url=Support.TRANSLATED,
)


def _refused(message: str) -> UpstreamError:
    """A request this adapter cannot express: the caller's, so no retry and no breaker."""
    return UpstreamError(message, status=400, retryable=False, server_fault=False)


def _image(part: ImagePart) -> dict[str, Any]:
    if not part.is_data:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    try:
        media_type, data = part.data()
    except ValueError as exc:
        raise _refused("an image data URL must be base64 encoded") from exc
    if media_type not in _IMAGE_TYPES:
        raise _refused(f"Anthropic reads JPEG, PNG, GIF and WebP images, not {media_type[:50]!r}")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _block(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        # Anthropic refuses empty text blocks; an empty part says nothing anyway.
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ImagePart):
        return _image(part)
    if isinstance(part, ToolCall):
        return {
            "type": "tool_use",
            "id": part.id,
            "name": part.name,
            # {} for arguments that are not an object: the ingress validates them, and a bad
            # one must not crash the call.
            "input": part.arguments_object() or {},
        }
    content = [block for p in part.content if (block := _block(p)) is not None]
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.call_id}
    if content:
        result["content"] = content
    if part.is_error:
        result["is_error"] = True
    return result


def _messages(messages: Sequence[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system text, alternating user/assistant messages of blocks)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [block for p in message.parts if (block := _block(p)) is not None]
        if not blocks:
            continue
        # Anthropic requires user and assistant turns to alternate: a tool result followed by
        # the user's next words is one user turn.
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for turn in out:
        # Tool results must open their user turn (stable: the rest keep their order).
        turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return system, out


def _json_tool(generation: Generation) -> dict[str, Any] | None:
    """The forced tool that stands for the response format, or None for plain text."""
    fmt = generation.response_format
    if fmt is None or fmt.type == "text":
        return None
    name = fmt.name if fmt.name and _TOOL_NAME.fullmatch(fmt.name) else JSON_TOOL
    schema = dict(fmt.schema) if fmt.type == "json_schema" and fmt.schema else {}
    # A tool's input is an object: Anthropic refuses any other root type with its own words.
    if schema.setdefault("type", "object") != "object":
        raise _refused(
            "Anthropic answers in JSON through a tool whose input is an object: "
            "a JSON schema whose root is not an object cannot be honoured"
        )
    return {
        "name": name,
        "description": fmt.description
        or "Give your answer by calling this tool: its input is the answer, as JSON.",
        "input_schema": schema,
    }


def _tool_choice(generation: Generation) -> dict[str, Any] | None:
    choice = generation.tool_choice
    mode = choice.mode if choice is not None else "auto"
    if mode == "none":
        return {"type": "none"}  # Anthropic takes no parallel setting with "none"
    out: dict[str, Any] = {"type": {"auto": "auto", "required": "any"}.get(mode, "tool")}
    if mode == "tool":
        out["name"] = choice.name if choice is not None else None
    if generation.parallel_tool_calls is False:
        out["disable_parallel_tool_use"] = True
    if choice is None and "disable_parallel_tool_use" not in out:
        return None  # nothing asked for: Anthropic's default is auto
    return out


@dataclass(frozen=True)
class _Call:
    body: dict[str, Any]
    json_tool: str | None  # the forced tool's name when the answer is its JSON input


def _call(request: CompletionRequest, stream: bool) -> _Call:
    g = request.generation
    system, messages = _messages(request.messages)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "stream": stream,
    }
    if system:
        body["system"] = system
    if g.temperature is not None:
        body["temperature"] = min(g.temperature, 1.0)  # Anthropic's range is 0-1
    if g.top_p is not None:
        body["top_p"] = g.top_p
    if g.top_k is not None:
        body["top_k"] = g.top_k
    if g.stop:
        body["stop_sequences"] = list(g.stop)
    if g.user is not None:
        body["metadata"] = {"user_id": g.user}
    json_tool = _json_tool(g)
    if json_tool is not None:
        if g.tools:
            # Either the forced JSON tool or the caller's tools would have to give way.
            raise _refused(
                "Anthropic cannot honour tools and a response format in one request: "
                "send one of them"
            )
        body["tools"] = [json_tool]
        body["tool_choice"] = {"type": "tool", "name": json_tool["name"]}
        return _Call(body, json_tool["name"])
    if g.tools:
        body["tools"] = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": dict(tool.parameters),
            }
            for tool in g.tools
        ]
        if (choice := _tool_choice(g)) is not None:
            body["tool_choice"] = choice
    return _Call(body, None)


def _usage(usage: Mapping[str, Any]) -> Usage:
    """Anthropic counts cached input apart from `input_tokens`; the canonical prompt is all.
    Thinking is inside `output_tokens` already; `output_tokens_details` says how much."""
    read = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    details = usage.get("output_tokens_details") or {}
    return Usage(
        prompt_tokens=int(usage.get("input_tokens") or 0) + read + written,
        completion_tokens=int(usage.get("output_tokens") or 0),
        cached_read_tokens=read,
        cached_write_tokens=written,
        reasoning_tokens=int(details.get("thinking_tokens") or 0),
    )


def _finish(stop_reason: Any, json_tool: str | None, default: str = "stop") -> str:
    finish = _FINISH.get(stop_reason or "", default)
    # The forced JSON tool is how the answer was given, not a call for the caller to make.
    return "stop" if json_tool is not None and finish == "tool_calls" else finish


class AnthropicProvider:
    name = "anthropic"
    support = SUPPORT

    def __init__(self, base_url: str, api_key: str | None, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or ""
        self.headers = {"x-api-key": self.api_key, "anthropic-version": API_VERSION}
        self.client = client

    async def complete(self, request: CompletionRequest) -> Completion:
        call = _call(request, False)
        with transport_errors():
            response = await self.client.post(
                f"{self.base_url}/v1/messages", json=call.body, headers=self.headers
            )
            await raise_for_status(response)
        try:
            body = response.json()
            text: list[str] = []
            calls: list[ToolCall] = []
            for block in body["content"]:
                kind = block.get("type")
                if kind == "tool_use" and call.json_tool is not None:
                    if block["name"] == call.json_tool:
                        text.append(json.dumps(block.get("input") or {}, ensure_ascii=False))
                elif kind == "tool_use":
                    arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
                    calls.append(ToolCall(str(block["id"]), str(block["name"]), arguments))
                elif kind == "text" and call.json_tool is None:
                    text.append(str(block.get("text", "")))
                # thinking, redacted_thinking and server tool blocks are not the answer
            usage = body.get("usage")
            return Completion(
                text="".join(text),
                usage=_usage(usage) if usage else None,
                finish_reason=_finish(body.get("stop_reason"), call.json_tool),
                tool_calls=tuple(calls),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise malformed(self.name, exc) from exc

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        call = _call(request, True)
        usage: dict[str, Any] = {}
        finish = "stop"
        tools: dict[int, int] = {}  # Anthropic's block index -> the answer's tool call index
        json_blocks: set[int] = set()  # blocks of the forced JSON tool
        filled: set[int] = set()  # tool blocks that received some input JSON
        with transport_errors():
            async with self.client.stream(
                "POST", f"{self.base_url}/v1/messages", json=call.body, headers=self.headers
            ) as response:
                await raise_for_status(response)
                async for event, data in events(response):
                    if event == "error":
                        raise UpstreamError(
                            "anthropic stream error",
                            retryable=True,
                            detail=redact(data, [self.api_key]),
                        )
                    if event == "message_stop":
                        break
                    try:
                        payload = json.loads(data)
                        out: StreamEvent | None = None
                        if event == "message_start":
                            usage.update(payload["message"].get("usage") or {})
                        elif event == "content_block_start":
                            index, block = int(payload["index"]), payload["content_block"]
                            if block.get("type") == "tool_use" and call.json_tool is not None:
                                json_blocks.add(index)
                            elif block.get("type") == "tool_use":
                                tools[index] = len(tools)
                                out = ToolCallDelta(
                                    tools[index], id=str(block["id"]), name=str(block["name"])
                                )
                            elif block.get("type") == "text" and call.json_tool is None:
                                out = Delta(str(block["text"])) if block.get("text") else None
                        elif event == "content_block_delta":
                            index, delta = int(payload["index"]), payload["delta"]
                            kind = delta.get("type")
                            if kind == "text_delta" and call.json_tool is None:
                                out = Delta(delta["text"]) if delta["text"] else None
                            elif kind == "input_json_delta" and delta["partial_json"]:
                                piece = str(delta["partial_json"])
                                if index in json_blocks:
                                    filled.add(index)
                                    out = Delta(piece)
                                elif index in tools:
                                    filled.add(index)
                                    out = ToolCallDelta(tools[index], arguments=piece)
                            # thinking and signature deltas are not the answer
                        elif event == "content_block_stop":
                            index = int(payload["index"])
                            # A call without arguments streams no JSON at all: "{}" keeps
                            # the reassembled arguments (or JSON answer) valid JSON.
                            if index in json_blocks and index not in filled:
                                out = Delta("{}")
                            elif index in tools and index not in filled:
                                out = ToolCallDelta(tools[index], arguments="{}")
                        elif event == "message_delta":
                            # Its counts are cumulative: they replace message_start's.
                            counts = payload.get("usage") or {}
                            usage.update({k: v for k, v in counts.items() if v is not None})
                            reason = (payload.get("delta") or {}).get("stop_reason")
                            finish = _finish(reason, call.json_tool, finish)
                    except (ValueError, KeyError, TypeError, AttributeError) as exc:
                        raise malformed(self.name, exc) from exc
                    if out is not None:
                        yield out
        try:
            final = _usage(usage)
        except (ValueError, TypeError, AttributeError) as exc:
            raise malformed(self.name, exc) from exc
        yield StreamEnd(final, finish)

    async def aclose(self) -> None:
        """The shared HTTP client is owned by the registry."""
