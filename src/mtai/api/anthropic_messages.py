"""Anthropic's Messages API <-> the canonical conversation (see ARCHITECTURE.md).

Requests become a `ChatInput`; an `Outcome` becomes a `message` object; the gateway's stream
events become Anthropic's named-event stream. Everything the request holds is either
translated or refused with a 400 naming it, except prompt-caching hints (`cache_control`),
which change no answer: they are accepted, not forwarded, and named in the dropped-params
header.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtai.api.errors import anthropic_error_body
from mtai.api.openai_chat import MAX_URL_CHARS, check_schema, image_part
from mtai.api.streaming import sse
from mtai.config import Settings
from mtai.errors import AppError, InvalidInput
from mtai.providers.llm.conversation import (
    Delta,
    Generation,
    ImagePart,
    Message,
    Part,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Usage,
)
from mtai.services.gateway import ChatInput, Outcome, UnsupportedParameter

# Anthropic's own rules for names and ids, so a request valid here is valid upstream too.
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,256}$")
MAX_TOOLS = 512
# Request fields mtai cannot honour. These tune how or where an answer is produced, so
# `drop_params` may drop them...
_DROPPABLE_FIELDS = ("thinking", "service_tier", "speed", "inference_geo", "diagnostics")
# Values of those that ask for nothing beyond what every answer gets: no thinking, standard
# capacity (what `auto` falls back to), standard speed.
_HONOURED = {
    "thinking": ({"type": "disabled"},),
    "service_tier": ("auto", "standard_only"),
    "speed": ("standard",),
}
# ...these give the model capabilities (a code container, MCP servers) it would silently lack.
_REFUSED_FIELDS = ("container", "mcp_servers")
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}

_CHOICE_MODES: dict[str, Literal["auto", "none", "required", "tool"]] = {
    "auto": "auto",
    "any": "required",
    "tool": "tool",
    "none": "none",
}

_STRICT = ConfigDict(extra="forbid")
_Json = dict[str, Any]


class _Block(BaseModel):
    model_config = _STRICT
    type: str
    cache_control: _Json | None = None


class _TextBlock(_Block):
    text: str = Field(max_length=1_000_000)
    # What an answer of Anthropic's own may carry when a client sends it back; mtai never
    # makes citations, so only an empty list means nothing is lost.
    citations: list[Any] | None = Field(default=None, max_length=0)


class _Base64Source(BaseModel):
    model_config = _STRICT
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class _UrlSource(BaseModel):
    model_config = _STRICT
    type: Literal["url"]
    url: str = Field(min_length=1, max_length=MAX_URL_CHARS)


class _ImageBlock(_Block):
    source: _Json


class _ToolUseBlock(_Block):
    id: str = Field(pattern=_TOOL_ID.pattern)
    name: str = Field(pattern=_TOOL_NAME.pattern)
    input: _Json


class _ToolResultBlock(_Block):
    tool_use_id: str = Field(pattern=_TOOL_ID.pattern)
    content: str | list[_Json] | None = None
    is_error: bool | None = None


class _MessageIn(BaseModel):
    model_config = _STRICT
    role: Literal["user", "assistant", "system"]
    content: str | list[_Json]


class _Metadata(BaseModel):
    model_config = _STRICT
    user_id: str | None = Field(default=None, max_length=256)


class _ToolIn(BaseModel):
    model_config = _STRICT
    type: Literal["custom"] | None = None
    name: str = Field(pattern=_TOOL_NAME.pattern)
    description: str | None = Field(default=None, max_length=100_000)
    input_schema: _Json
    strict: bool | None = None
    cache_control: _Json | None = None
    # How finely the call's input is streamed: it changes no answer.
    eager_input_streaming: bool | None = None


class _OutputFormat(BaseModel):
    model_config = _STRICT
    type: Literal["json_schema"]
    schema_: _Json = Field(alias="schema")


class _OutputConfig(BaseModel):
    model_config = _STRICT
    format: _OutputFormat | None = None
    effort: str | None = None


class _ToolChoiceIn(BaseModel):
    model_config = _STRICT
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class CountTokensRequest(BaseModel):
    """`POST /v1/messages/count_tokens`: the conversation part of a Messages request. Unknown
    fields are refused (as Anthropic does), so nothing a client sends is ignored unnoticed."""

    model_config = _STRICT
    model: str = Field(min_length=1, max_length=100)
    messages: list[_MessageIn] = Field(min_length=1)
    system: str | list[_Json] | None = None
    tools: list[_Json] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: _ToolChoiceIn | None = None
    output_config: _OutputConfig | None = None
    cache_control: _Json | None = None
    thinking: _Json | None = None
    speed: str | None = None
    mcp_servers: list[Any] | None = None
    # mtai's extension (LiteLLM's convention): drop settings the model cannot honour.
    drop_params: bool = False


class MessagesRequest(CountTokensRequest):
    """`POST /v1/messages`."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[Annotated[str, Field(min_length=1, max_length=1000)]] | None = Field(
        default=None, max_length=64
    )
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: _Metadata | None = None
    stream: bool = False
    service_tier: str | None = None
    inference_geo: str | None = None
    diagnostics: _Json | None = None
    container: Any = None


@dataclass(frozen=True)
class Translated:
    chat: ChatInput
    # Request fields mtai accepted without forwarding: `cache_control`, and what
    # `drop_params` dropped; listed in the response's dropped-params header.
    dropped: tuple[str, ...] = ()


@dataclass
class _Reader:
    """Walks one request's content, noting what it accepted without forwarding."""

    drop_params: bool
    settings: Settings
    dropped: list[str] = field(default_factory=list)
    images: int = 0

    @property
    def max_chars(self) -> int:
        return self.settings.max_message_chars

    def note(self, name: str) -> None:
        if name not in self.dropped:
            self.dropped.append(name)

    def block(self, model: type[_Block], raw: _Json, where: str) -> Any:
        parsed = _validated(model, raw, where)
        if parsed.cache_control is not None:
            self.note("cache_control")
        return parsed

    def text(self, raw: _Json, where: str) -> TextPart:
        block: _TextBlock = self.block(_TextBlock, raw, where)
        if len(block.text) > self.max_chars:
            raise InvalidInput(f"{where}.text is longer than {self.max_chars} characters.")
        return TextPart(block.text)

    def image(self, raw: _Json, where: str) -> ImagePart:
        """The same checks as the OpenAI API's images: https URLs, or base64 PNG, JPEG, GIF
        or WebP whose bytes are that type, within the size and per-request limits."""
        block: _ImageBlock = self.block(_ImageBlock, raw, where)
        self.images += 1
        if self.images > self.settings.max_images_per_request:
            raise InvalidInput(
                f"Too many images: at most {self.settings.max_images_per_request} per request."
            )
        kind = block.source.get("type")
        if kind == "base64":
            source = _validated(_Base64Source, block.source, f"{where}.source")
            url = f"data:{source.media_type};base64,{source.data}"
            return image_part(url, None, f"{where}.source", self.settings)
        if kind == "url":
            url = _validated(_UrlSource, block.source, f"{where}.source").url
            return image_part(url, None, f"{where}.source.url", self.settings)
        raise InvalidInput(
            f"{where}.source.type {kind!r} is not supported; send 'base64' or 'url' (the Files "
            "API is not available through mtai)."
        )

    def tool_result(self, raw: _Json, where: str) -> ToolResult:
        block: _ToolResultBlock = self.block(_ToolResultBlock, raw, where)
        content: list[TextPart | ImagePart] = []
        if isinstance(block.content, str):
            content.append(TextPart(block.content))
        for index, item in enumerate(block.content if isinstance(block.content, list) else []):
            at = f"{where}.content.{index}"
            kind = item.get("type")
            if kind == "text":
                content.append(self.text(item, at))
            elif kind == "image":
                content.append(self.image(item, at))
            else:
                raise InvalidInput(
                    f"{at}: a tool result holds text and image blocks; {kind!r} is not supported."
                )
        return ToolResult(block.tool_use_id, tuple(content), bool(block.is_error))

    def message(self, index: int, message: _MessageIn) -> list[Message]:
        """One Anthropic message as canonical messages: a user message's tool results become
        a "tool" message, followed by a user message with its other blocks, if any."""
        where = f"messages.{index}.content"
        if message.role == "system":
            return _system(self, message.content, where)
        if isinstance(message.content, str):
            if len(message.content) > self.max_chars:
                raise InvalidInput(f"{where} is longer than {self.max_chars} characters.")
            return [Message(message.role, message.content)]
        parts: list[Part] = []
        results: list[ToolResult] = []
        for position, raw in enumerate(message.content):
            at = f"{where}.{position}"
            kind = raw.get("type")
            if kind == "text":
                parts.append(self.text(raw, at))
            elif kind == "image" and message.role == "user":
                parts.append(self.image(raw, at))
            elif kind == "tool_use" and message.role == "assistant":
                call: _ToolUseBlock = self.block(_ToolUseBlock, raw, at)
                check_schema(call.input, f"{at}.input")
                parts.append(ToolCall(call.id, call.name, json.dumps(call.input)))
            elif kind == "tool_result" and message.role == "user":
                results.append(self.tool_result(raw, at))
            elif kind in ("thinking", "redacted_thinking") and message.role == "assistant":
                # The model's earlier reasoning: only meaningful with `thinking`, which mtai
                # does not forward; dropped with it when the request allows.
                self.drop("thinking", at)
            elif kind in ("image", "tool_use", "tool_result"):
                raise InvalidInput(f"{at}: a {message.role} message cannot hold a {kind} block.")
            else:
                raise InvalidInput(
                    f"{at}: content block type {kind!r} is not supported by mtai; send text, "
                    "image, tool_use and tool_result blocks."
                )
        if not parts and not results:
            raise InvalidInput(f"{where}: a message needs at least one content block.")
        out: list[Message] = []
        if results:
            out.append(Message("tool", results))
        if parts:
            out.append(Message(message.role, parts))
        return out

    def drop(self, name: str, where: str) -> None:
        if not self.drop_params:
            raise UnsupportedParameter(
                f"{where}: '{name}' is not supported by mtai's Messages API; remove it, or send "
                "drop_params: true to drop it.",
                param=name,
            )
        self.note(name)


_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], raw: Any, where: str) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(f"{where}{'.' + loc if loc else ''}: {first.get('msg', '')}") from None


def _system(reader: _Reader, system: str | list[_Json] | None, where: str) -> list[Message]:
    """The top-level `system` or a message of role "system" as canonical system messages,
    one per text block: the adapters join several with blank lines, and a client's blocks
    (Claude Code sends several) stay apart as it meant them."""
    if system is None:
        return []
    if isinstance(system, str):
        if len(system) > reader.max_chars:
            raise InvalidInput(f"{where} is longer than {reader.max_chars} characters.")
        return [Message("system", system)] if system else []
    out = []
    for index, raw in enumerate(system):
        if raw.get("type") != "text":
            raise InvalidInput(f"{where}.{index}: a system prompt holds text blocks only.")
        part = reader.text(raw, f"{where}.{index}")
        if part.text:
            out.append(Message("system", [part]))
    return out


def _tools(reader: _Reader, raw_tools: list[_Json] | None) -> tuple[ToolSpec, ...]:
    tools: list[ToolSpec] = []
    for index, raw in enumerate(raw_tools or []):
        kind = raw.get("type")
        if kind not in (None, "custom"):
            raise InvalidInput(
                f"tools.{index}: server tool {kind!r} is not supported by mtai; define client "
                "tools (name, description, input_schema) and run them yourself."
            )
        tool = _validated(_ToolIn, raw, f"tools.{index}")
        if tool.cache_control is not None:
            reader.note("cache_control")
        if tool.eager_input_streaming is not None:
            reader.note("eager_input_streaming")
        check_schema(tool.input_schema, f"tools.{index}.input_schema")
        if tool.input_schema.get("type") != "object":
            raise InvalidInput(f"tools.{index}.input_schema: type must be 'object'.")
        if any(t.name == tool.name for t in tools):
            raise InvalidInput(f"tools.{index}: tool name '{tool.name}' is used twice.")
        tools.append(ToolSpec(tool.name, tool.description, tool.input_schema, tool.strict))
    return tuple(tools)


def _tool_choice(
    choice: _ToolChoiceIn | None, tools: Sequence[ToolSpec]
) -> tuple[ToolChoice | None, bool | None]:
    """The canonical tool choice and parallel-calls setting."""
    if choice is None:
        return None, None
    if choice.type == "tool":
        if choice.name is None:
            raise InvalidInput("tool_choice.name is required when tool_choice.type is 'tool'.")
        if all(t.name != choice.name for t in tools):
            raise InvalidInput(f"tool_choice.name: no tool named '{choice.name}' in tools.")
    elif choice.name is not None:
        raise InvalidInput("tool_choice.name is only allowed when tool_choice.type is 'tool'.")
    if choice.type in ("any", "tool") and not tools:
        raise InvalidInput(f"tool_choice.type '{choice.type}' needs tools.")
    canonical = ToolChoice(_CHOICE_MODES[choice.type], choice.name)
    # Anthropic's default allows parallel calls: only `true` asks for something.
    return canonical, (False if choice.disable_parallel_tool_use else None)


def _fields(reader: _Reader, body: CountTokensRequest) -> ResponseFormat | None:
    """Refuses (or, when allowed, drops) the top-level fields mtai cannot honour; the
    response format `output_config` asks for."""
    for name in (*_DROPPABLE_FIELDS, *_REFUSED_FIELDS):
        value = getattr(body, name, None)
        if value is None or value in _HONOURED.get(name, ()):
            continue
        if name in _REFUSED_FIELDS:
            raise UnsupportedParameter(
                f"'{name}' is not supported by mtai's Messages API; remove it.", param=name
            )
        reader.drop(name, name)
    if body.cache_control is not None:
        reader.note("cache_control")
    config = body.output_config
    if config is None:
        return None
    if config.effort is not None:
        reader.drop("output_config.effort", "output_config.effort")
    if config.format is None:
        return None
    check_schema(config.format.schema_, "output_config.format.schema")
    return ResponseFormat("json_schema", schema=config.format.schema_)


def translate(body: CountTokensRequest, settings: Settings) -> Translated:
    """The request as the gateway's `ChatInput` (a count-tokens request gives the same
    conversation, with no output settings)."""
    reader = _Reader(drop_params=body.drop_params, settings=settings)
    response_format = _fields(reader, body)
    messages = _system(reader, body.system, "system")
    for index, message in enumerate(body.messages):
        messages += reader.message(index, message)
    tools = _tools(reader, body.tools)
    choice, parallel = _tool_choice(body.tool_choice, tools)
    generation = Generation(
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=response_format,
    )
    max_tokens: int | None = None
    if isinstance(body, MessagesRequest):
        max_tokens = body.max_tokens
        generation = Generation(
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            stop=tuple(body.stop_sequences or ()),
            user=body.metadata.user_id if body.metadata else None,
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=parallel,
            response_format=response_format,
        )
    chat = ChatInput(
        messages=messages,
        model=body.model,
        max_tokens=max_tokens,
        generation=generation,
        drop_params=body.drop_params,
    )
    return Translated(chat, tuple(reader.dropped))


# -- responses --------------------------------------------------------------------------


def message_id(request_id: str) -> str:
    return f"msg_{request_id}"


def stop_reason(finish: str) -> str:
    """Anthropic's stop reason for a canonical finish. A matched stop sequence is reported as
    `end_turn`: not every upstream says which sequence matched, or that one did."""
    return _STOP_REASONS.get(finish, "end_turn")


def usage_json(usage: Usage) -> dict[str, Any]:
    """Anthropic counts cached input apart from `input_tokens`; the canonical prompt count
    includes it."""
    cached = usage.cached_read_tokens + usage.cached_write_tokens
    out: dict[str, Any] = {
        "input_tokens": max(0, usage.prompt_tokens - cached),
        "cache_creation_input_tokens": usage.cached_write_tokens,
        "cache_read_input_tokens": usage.cached_read_tokens,
        "output_tokens": usage.completion_tokens,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


def _input(call: ToolCall) -> Any:
    """A tool call's arguments as the object Anthropic's `input` is. An upstream that wrote
    something other than a JSON object is shown as such rather than made up."""
    value = call.arguments_object()
    return value if value is not None else {"_raw_arguments": call.arguments}


def message_json(outcome: Outcome) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if outcome.text:
        content.append({"type": "text", "text": outcome.text})
    content += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c)}
        for c in outcome.tool_calls
    ]
    return {
        "id": message_id(outcome.request_id),
        "type": "message",
        "role": "assistant",
        "model": outcome.model.name,
        "content": content,
        "stop_reason": stop_reason(outcome.finish_reason),
        "stop_sequence": None,
        "usage": usage_json(outcome.usage),
    }


class MessageStream:
    """Anthropic's event sequence for one streamed answer: message_start, ping, then a
    content block per text run or tool call (start, deltas, stop), message_delta with the
    stop reason and usage, message_stop."""

    def __init__(self, message_id: str, model: str, input_tokens: int) -> None:
        self.message_id = message_id
        self.model = model
        self.input_tokens = input_tokens
        self._blocks = 0  # content blocks started so far
        self._open: int | None = None  # the index of the block being written
        self._open_text = False
        self._calls: dict[int, int] = {}  # tool call index -> content block index

    def start(self) -> list[str]:
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # mtai's own count of the prompt: the upstream's comes in message_delta.
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return [
            sse({"type": "message_start", "message": message}, "message_start"),
            sse({"type": "ping"}, "ping"),
        ]

    def _begin(self, block: dict[str, Any]) -> list[str]:
        out = self._close()
        self._open = self._blocks
        self._blocks += 1
        out.append(
            sse(
                {"type": "content_block_start", "index": self._open, "content_block": block},
                "content_block_start",
            )
        )
        return out

    def _close(self) -> list[str]:
        if self._open is None:
            return []
        index, self._open, self._open_text = self._open, None, False
        return [sse({"type": "content_block_stop", "index": index}, "content_block_stop")]

    @staticmethod
    def _delta(index: int, delta: dict[str, Any]) -> str:
        return sse(
            {"type": "content_block_delta", "index": index, "delta": delta},
            "content_block_delta",
        )

    def on(self, event: Delta | ToolCallDelta) -> list[str]:
        if isinstance(event, Delta):
            if not event.text:
                return []
            out = [] if self._open_text else self._begin({"type": "text", "text": ""})
            self._open_text = True
            assert self._open is not None
            out.append(self._delta(self._open, {"type": "text_delta", "text": event.text}))
            return out
        out = []
        block = self._calls.get(event.index)
        if block is None:
            out = self._begin(
                {
                    "type": "tool_use",
                    "id": event.id or f"toolu_{uuid.uuid4().hex[:24]}",
                    "name": event.name or "",
                    "input": {},
                }
            )
            assert self._open is not None
            block = self._calls[event.index] = self._open
        if event.arguments:
            # A piece of an earlier call arriving late still goes to its own block.
            out.append(
                self._delta(block, {"type": "input_json_delta", "partial_json": event.arguments})
            )
        return out

    def finish(self, outcome: Outcome) -> list[str]:
        return [
            *self._close(),
            sse(
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": stop_reason(outcome.finish_reason),
                        "stop_sequence": None,
                    },
                    "usage": usage_json(outcome.usage),
                },
                "message_delta",
            ),
            sse({"type": "message_stop"}, "message_stop"),
        ]

    @staticmethod
    def error(exc: AppError) -> str:
        return sse(anthropic_error_body(exc.status_code, exc.detail), "error")
