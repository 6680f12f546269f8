"""The OpenAI Responses API's shapes, translated to and from the canonical conversation.

Request: `input` (text or items: messages, `function_call`, `function_call_output`),
`instructions`, function tools, `tool_choice`, `text.format` and the sampling settings become a
`ChatInput`. What mtai cannot honour is a 400 `unsupported_parameter` naming it; settings that
only tune an answer are dropped instead when the request says `drop_params: true` (and listed in
`X-Mtai-Dropped-Params`). Nothing is ignored in silence, unknown parameters included.

Response: an `Outcome` becomes a response object (`output` items: an assistant message, then one
`function_call` item per tool call); a stream becomes the semantic event stream
(`response.created` ... `response.completed`), each event numbered by `sequence_number`.
Shapes follow the `openai` SDK's `types/responses` models, which parse them.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mtai.api.openai_chat import MAX_TOOLS, NAME_PATTERN, check_schema, image_part
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
    Role,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Usage,
)
from mtai.services.gateway import ChatInput, Outcome, UnsupportedParameter

MAX_ITEMS = 1000  # input items in one request
MAX_DESCRIPTION_CHARS = 16_384
MAX_ID_CHARS = 256  # a call_id or an item id
_DETAILS = ("low", "high", "auto")
_ROLES: dict[str, Role] = {
    "user": "user",
    "system": "system",
    "developer": "system",
    "assistant": "assistant",
}
# `include` values whose items mtai never produces (no reasoning items), so asking for them
# changes nothing; every other value asks for something mtai cannot give.
_VACUOUS_INCLUDES = frozenset({"reasoning.encrypted_content"})
LOGPROBS_INCLUDE = "message.output_text.logprobs"
# The keys of a function tool and of a JSON schema text format that mtai honours.
_TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})
_SCHEMA_FORMAT_KEYS = frozenset({"type", "name", "schema", "description", "strict"})


class ResponsesRequest(BaseModel):
    """POST /v1/responses. Unknown fields are kept (extra) only to be refused by name."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=100)
    # The item count is bounded; a text input is bounded in characters by input_messages (a
    # max_length on the whole union would cap text at MAX_ITEMS characters too).
    input: str | Annotated[list[dict[str, Any]], Field(max_length=MAX_ITEMS)] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    max_tool_calls: Annotated[int, Field(ge=1)] | None = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    store: bool | None = True
    previous_response_id: str | None = Field(default=None, max_length=100)
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    truncation: str | None = None
    reasoning: dict[str, Any] | None = None
    include: list[str] | None = Field(default=None, max_length=32)
    background: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    # What mtai does not offer on this API: refused by name when given.
    conversation: Any = None
    prompt: Any = None
    context_management: Any = None
    moderation: Any = None
    prompt_cache_options: Any = None
    # mtai's extension (LiteLLM's convention): drop settings the model cannot honour.
    drop_params: bool = False


@dataclass
class Translated:
    """A request in canonical terms, and what the response object echoes back."""

    chat: ChatInput
    turn_input: list[Message]  # this request's own input (what a stored turn keeps)
    dropped: list[str]  # Responses-only settings dropped at drop_params' request
    echo: dict[str, Any]
    logprobs: bool  # output_text carries logprobs


def _refuse(param: str, detail: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"'{param}': {detail}", param=param)


def _invalid(param: str, detail: str) -> InvalidInput:
    return InvalidInput(f"'{param}': {detail}")


def _schema(value: Any, param: str) -> dict[str, Any]:
    check_schema(value, f"'{param}'")
    schema: dict[str, Any] = value
    return schema


def _string(item: dict[str, Any], key: str, param: str, limit: int) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise _invalid(f"{param}.{key}", "must be a string.")
    if len(value) > limit:
        raise _invalid(f"{param}.{key}", f"is longer than {limit} characters.")
    return value


def _known(item: dict[str, Any], keys: frozenset[str], param: str) -> None:
    """Refuses by name a key mtai would otherwise ignore (null is what SDKs send for "not
    given"); what passes is also what the response object echoes back."""
    for key in sorted(set(item) - keys):
        if item[key] is not None:
            raise _refuse(f"{param}.{key[:64]}", "unknown parameter.")


def _name(item: dict[str, Any], param: str) -> str:
    name = item.get("name")
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise _invalid(f"{param}.name", "must be 1-64 letters, digits, '_' or '-'.")
    return name


def _image(part: dict[str, Any], param: str, settings: Settings) -> ImagePart:
    if part.get("file_id") is not None:
        raise _refuse(
            f"{param}.file_id", "files are not supported; send image_url (https or data)."
        )
    url = part.get("image_url")
    if not isinstance(url, str):
        raise _invalid(f"{param}.image_url", "must be an https URL or a base64 data URL.")
    detail = part.get("detail")
    if detail is not None and detail not in _DETAILS:
        raise _invalid(f"{param}.detail", "must be low, high or auto.")
    return image_part(url, detail, f"'{param}'", settings)


def _content(
    content: Any, param: str, *, assistant: bool, images: bool, settings: Settings
) -> list[TextPart | ImagePart]:
    """A message's (or a tool output's) content: a string or a list of parts."""
    limit = settings.max_message_chars
    if isinstance(content, str):
        if len(content) > limit:
            raise _invalid(param, f"is longer than {limit} characters.")
        return [TextPart(content)]
    if not isinstance(content, list) or len(content) > MAX_ITEMS:
        raise _invalid(param, f"must be a string or a list of at most {MAX_ITEMS} parts.")
    parts: list[TextPart | ImagePart] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict):
            raise _invalid(where, "must be an object.")
        if kind == "input_text" or (assistant and kind == "output_text"):
            parts.append(TextPart(_string(part, "text", where, limit)))
        elif assistant and kind == "refusal":
            parts.append(TextPart(_string(part, "refusal", where, limit)))
        elif kind == "input_image" and images:
            parts.append(_image(part, where, settings))
        elif kind in ("input_image", "input_file", "input_audio"):
            raise _refuse(f"{where}.type", f"{kind} is not supported here.")
        else:
            raise _invalid(f"{where}.type", f"unknown content part type {kind!r}.")
    return parts


def _call_id(item: dict[str, Any], param: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id or len(call_id) > MAX_ID_CHARS:
        raise _invalid(f"{param}.call_id", f"must be a string of 1-{MAX_ID_CHARS} characters.")
    return call_id


def input_messages(value: str | list[dict[str, Any]] | None, settings: Settings) -> list[Message]:
    """The request's `input` as canonical messages: an assistant message's function calls
    join it (as do calls that follow each other), consecutive outputs share one tool message."""
    if value is None:
        raise InvalidInput("'input' is required: send text or a list of input items.")
    limit = settings.max_message_chars
    if isinstance(value, str):
        if len(value) > limit:
            raise _invalid("input", f"is longer than {limit} characters.")
        return [Message("user", value)]
    messages: list[Message] = []

    def extend_last(role: Role, part: Part) -> None:
        if messages and messages[-1].role == role:
            messages[-1] = Message(role, [*messages[-1].parts, part])
        else:
            messages.append(Message(role, [part]))

    for index, item in enumerate(value):
        where = f"input[{index}]"
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            given = item.get("role")
            role = _ROLES.get(given) if isinstance(given, str) else None
            if role is None:
                raise _invalid(f"{where}.role", "must be user, system, developer or assistant.")
            parts = _content(
                item.get("content"),
                f"{where}.content",
                assistant=role == "assistant",
                images=role == "user",
                settings=settings,
            )
            messages.append(Message(role, parts))
        elif kind == "function_call":
            arguments = _string(item, "arguments", where, limit)
            call = ToolCall(_call_id(item, where), _name(item, where), arguments)
            if call.arguments_object() is None:
                raise _invalid(f"{where}.arguments", "must be the JSON text of an object.")
            extend_last("assistant", call)
        elif kind == "function_call_output":
            output = _content(
                item.get("output"),
                f"{where}.output",
                assistant=False,
                images=True,
                settings=settings,
            )
            extend_last("tool", ToolResult(_call_id(item, where), tuple(output)))
        elif isinstance(kind, str):
            raise _refuse(f"{where}.type", f"input items of type {kind!r} are not supported.")
        else:
            raise _invalid(f"{where}.type", "is required.")
    if not messages:
        raise InvalidInput("'input' is empty: send at least one input item.")
    return messages


def _tools(value: list[dict[str, Any]] | None, limit: int) -> tuple[ToolSpec, ...]:
    specs: list[ToolSpec] = []
    for index, tool in enumerate(value or []):
        where = f"tools[{index}]"
        kind = tool.get("type")
        if kind != "function":
            raise _refuse(
                f"{where}.type",
                f"tool type {kind!r} is not supported; only function tools are.",
            )
        _known(tool, _TOOL_KEYS, where)
        name = _name(tool, where)
        if any(s.name == name for s in specs):
            raise _invalid(f"{where}.name", f"'{name}' is defined twice.")
        description = tool.get("description")
        if description is not None:
            description = _string(tool, "description", where, min(limit, MAX_DESCRIPTION_CHARS))
        strict = tool.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise _invalid(f"{where}.strict", "must be true or false.")
        parameters = tool.get("parameters")
        specs.append(
            ToolSpec(
                name=name,
                description=description,
                parameters=_schema(parameters, f"{where}.parameters")
                if parameters is not None
                else {"type": "object", "properties": {}},
                strict=strict,
            )
        )
    return tuple(specs)


def _tool_choice(
    value: str | dict[str, Any] | None, tools: Sequence[ToolSpec]
) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        choice = ToolChoice(value)  # type: ignore[arg-type]
    elif isinstance(value, dict) and value.get("type") == "function":
        _known(value, frozenset({"type", "name"}), "tool_choice")
        name = _name(value, "tool_choice")
        if not any(t.name == name for t in tools):
            raise _invalid("tool_choice.name", f"'{name}' is not one of the request's tools.")
        choice = ToolChoice("tool", name)
    elif isinstance(value, dict):
        raise _refuse("tool_choice.type", f"{value.get('type')!r} is not supported.")
    else:
        raise _invalid("tool_choice", "must be auto, none, required or a function.")
    if choice.mode in ("required", "tool") and not tools:
        raise _invalid("tool_choice", f"'{choice.mode}' needs tools.")
    return choice


def _response_format(text: dict[str, Any] | None) -> ResponseFormat | None:
    shape = (text or {}).get("format")
    if shape is None:
        return None
    if not isinstance(shape, dict):
        raise _invalid("text.format", "must be an object.")
    kind = shape.get("type")
    if kind in ("text", "json_object"):
        _known(shape, frozenset({"type"}), "text.format")
        return None if kind == "text" else ResponseFormat("json_object")
    if kind != "json_schema":
        raise _invalid("text.format.type", "must be text, json_object or json_schema.")
    _known(shape, _SCHEMA_FORMAT_KEYS, "text.format")
    strict = shape.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _invalid("text.format.strict", "must be true or false.")
    description = shape.get("description")
    if description is not None and not isinstance(description, str):
        raise _invalid("text.format.description", "must be a string.")
    return ResponseFormat(
        "json_schema",
        schema=_schema(shape.get("schema"), "text.format.schema"),
        name=_name(shape, "text.format"),
        description=description,
        strict=strict,
    )


@dataclass
class _Refusals:
    """Responses-only settings mtai cannot honour: refused, or dropped if asked and allowed."""

    drop: bool
    dropped: list[str] = field(default_factory=list)

    def check(self, param: str, detail: str, *, droppable: bool) -> None:
        if droppable and self.drop:
            if param not in self.dropped:
                self.dropped.append(param)
            return
        hint = " (or send drop_params: true to drop it)" if droppable else ""
        raise _refuse(param, detail + hint)


def _ingress_settings(body: ResponsesRequest) -> tuple[list[str], bool]:
    """Checks the settings no canonical field holds: (what was dropped, logprobs wanted)."""
    refusals = _Refusals(body.drop_params)
    for name in sorted(body.model_extra or {}):
        refusals.check(name[:64], "unknown parameter.", droppable=False)
    for name in ("conversation", "prompt", "context_management", "moderation"):
        if getattr(body, name) is not None:
            refusals.check(name, "is not supported by mtai.", droppable=False)
    if body.background:
        refusals.check("background", "background responses are not supported.", droppable=False)
    if body.truncation not in (None, "auto"):
        refusals.check(
            "truncation",
            "mtai trims the oldest turns to fit the model's window (truncation 'auto').",
            droppable=True,
        )
    if body.reasoning and any(v is not None for v in body.reasoning.values()):
        refusals.check("reasoning", "reasoning settings are not supported.", droppable=True)
    if body.service_tier not in (None, "auto", "default"):
        refusals.check("service_tier", "only auto and default are offered.", droppable=True)
    for name in ("prompt_cache_key", "prompt_cache_retention", "prompt_cache_options"):
        if getattr(body, name) is not None:
            refusals.check(name, "prompt cache hints are not supported.", droppable=True)
    if (body.text or {}).get("verbosity") is not None:
        refusals.check("text.verbosity", "is not supported.", droppable=True)
    if (body.stream_options or {}).get("include_obfuscation"):
        refusals.check(
            "stream_options.include_obfuscation", "mtai does not pad stream events.", droppable=True
        )
    unknown_text = set(body.text or {}) - {"format", "verbosity"}
    for name in sorted(unknown_text):
        refusals.check(f"text.{name}", "unknown parameter.", droppable=False)
    logprobs = body.top_logprobs is not None
    for value in body.include or []:
        if value == LOGPROBS_INCLUDE:
            logprobs = True
        elif value not in _VACUOUS_INCLUDES:
            refusals.check("include", f"{value!r} is not supported.", droppable=True)
    for key, value in (body.metadata or {}).items():
        if len(key) > 64 or len(value) > 512:
            raise _invalid("metadata", "keys are at most 64 characters, values at most 512.")
    return refusals.dropped, logprobs


def translate(body: ResponsesRequest, history: list[Message], settings: Settings) -> Translated:
    """The request as a `ChatInput`: instructions first (they are not carried from one
    response to the next), then the stored conversation, then this request's input."""
    dropped, logprobs = _ingress_settings(body)
    limit = settings.max_message_chars
    turn_input = input_messages(body.input, settings)
    if body.instructions is not None and len(body.instructions) > limit:
        raise _invalid("instructions", f"is longer than {limit} characters.")
    tools = _tools(body.tools, limit)
    generation = Generation(
        temperature=body.temperature,
        top_p=body.top_p,
        logprobs=logprobs,
        top_logprobs=body.top_logprobs,
        user=body.user or body.safety_identifier,
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice, tools),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body.text),
    )
    system = [Message("system", body.instructions)] if body.instructions else []
    images = sum(len(m.images) for m in (*history, *turn_input))
    if images > settings.max_images_per_request:
        raise InvalidInput(
            f"Too many images: at most {settings.max_images_per_request} per request."
        )
    chat = ChatInput(
        messages=[*system, *history, *turn_input],
        model=body.model,
        max_tokens=body.max_output_tokens,
        generation=generation,
        drop_params=body.drop_params,
    )
    text_format = (body.text or {}).get("format") or {"type": "text"}
    echo = {
        "instructions": body.instructions,
        "tools": [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
                "strict": t.strict,
            }
            for t in tools
        ],
        "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "top_logprobs": body.top_logprobs,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "text": {"format": text_format},
        "truncation": "auto",
        "reasoning": {"effort": None, "summary": None},
        "previous_response_id": body.previous_response_id,
        "store": body.store is not False,
        "metadata": body.metadata or {},
        "user": body.user,
        "safety_identifier": body.safety_identifier,
        "background": False,
        "service_tier": "default",
    }
    return Translated(chat, turn_input, dropped, echo, logprobs)


# -- responses ------------------------------------------------------------------------------


def item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_read_tokens,
            "cache_write_tokens": usage.cached_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def status_of(finish_reason: str) -> tuple[str, dict[str, str] | None]:
    """(status, incomplete_details) of a response that ended with `finish_reason`."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _logprobs(raw: Any) -> list[dict[str, Any]]:
    """OpenAI chat's logprobs entries (`{"content": [...]}` or the list) as output_text's."""
    entries = raw.get("content") if isinstance(raw, dict) else raw
    return [e for e in entries or [] if isinstance(e, dict)]


def text_part(text: str, logprobs: list[dict[str, Any]] | None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if logprobs is not None:
        part["logprobs"] = logprobs
    return part


def message_item(
    item: str, text: str, status: str, logprobs: list[dict[str, Any]] | None
) -> dict[str, Any]:
    return {
        "id": item,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [text_part(text, logprobs)],
    }


def call_item(item: str, call: ToolCall, status: str) -> dict[str, Any]:
    return {
        "id": item,
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


def output_items(outcome: Outcome, *, logprobs: bool) -> list[dict[str, Any]]:
    """A finished answer as output items: its text (if any, or if there is nothing else),
    then its function calls."""
    status, _ = status_of(outcome.finish_reason)
    items: list[dict[str, Any]] = []
    if outcome.text or not outcome.tool_calls:
        shown = _logprobs(outcome.logprobs) if logprobs else None
        items.append(message_item(item_id("msg"), outcome.text, status, shown))
    items += [call_item(item_id("fc"), call, "completed") for call in outcome.tool_calls]
    return items


def output_messages(outcome: Outcome) -> list[Message]:
    """The answer as the canonical assistant message a stored turn keeps."""
    parts: list[Part] = [TextPart(outcome.text)] if outcome.text else []
    parts += list(outcome.tool_calls)
    return [Message("assistant", parts)] if parts else []


@dataclass(frozen=True)
class ResponseHead:
    """What every state of one response object shares."""

    id: str
    created_at: int
    model: str
    echo: dict[str, Any]

    def body(
        self,
        status: str,
        output: list[dict[str, Any]],
        *,
        usage: Usage | None = None,
        incomplete: dict[str, str] | None = None,
        completed_at: int | None = None,
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": completed_at,
            "error": None,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": output,
            "usage": usage_json(usage) if usage is not None else None,
            **self.echo,
        }


class EventStream:
    """The gateway's stream events as the Responses API's semantic events.

    Items open when their first piece arrives. Text goes into a message item (one output_text
    part), which closes when another item starts. Each tool call goes into a function_call
    item whose arguments stream as deltas; it stays open until the answer ends, since an
    upstream may interleave the pieces of parallel calls, and a call closed early would miss
    its later pieces (its `.done` would carry partial arguments). At the end every open item
    closes, in output order.
    """

    def __init__(self, head: ResponseHead, *, logprobs: bool) -> None:
        self.head = head
        self.logprobs = logprobs
        self.sequence = 0
        self.items: list[dict[str, Any]] = []  # every item so far, in output order
        self._text: dict[str, Any] | None = None  # the message item being written
        self._calls: dict[int, dict[str, Any]] = {}  # tool call index -> its item

    def _event(self, kind: str, **fields: Any) -> str:
        event = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return sse(event, event=kind)

    def start(self) -> Iterator[str]:
        snapshot = self.head.body("in_progress", [])
        yield self._event("response.created", response=snapshot)
        yield self._event("response.in_progress", response=snapshot)

    def _close(self, item: dict[str, Any], status: str) -> Iterator[str]:
        index = self.items.index(item)
        item["status"] = status
        if item["type"] == "message":
            part = item["content"][0]
            done = {"item_id": item["id"], "output_index": index, "content_index": 0}
            yield self._event(
                "response.output_text.done",
                **done,
                text=part["text"],
                logprobs=part.get("logprobs", []),
            )
            yield self._event("response.content_part.done", **done, part=part)
        else:
            yield self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
        yield self._event("response.output_item.done", output_index=index, item=item)

    def _close_text(self) -> Iterator[str]:
        item, self._text = self._text, None
        if item is not None:
            yield from self._close(item, "completed")

    def _begin_text(self) -> Iterator[str]:
        item = message_item(item_id("msg"), "", "in_progress", [] if self.logprobs else None)
        self.items.append(item)
        self._text = item
        index = len(self.items) - 1
        added = {**item, "content": []}
        yield self._event("response.output_item.added", output_index=index, item=added)
        yield self._event(
            "response.content_part.added",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            part=text_part("", [] if self.logprobs else None),
        )

    def on(self, event: Delta | ToolCallDelta) -> Iterator[str]:
        if isinstance(event, Delta):
            if not event.text:
                return
            if self._text is None:
                yield from self._begin_text()
            assert self._text is not None
            part = self._text["content"][0]
            part["text"] += event.text
            pieces = _logprobs(event.logprobs) if self.logprobs else []
            if self.logprobs:
                part["logprobs"] += pieces
            yield self._event(
                "response.output_text.delta",
                item_id=self._text["id"],
                output_index=self.items.index(self._text),
                content_index=0,
                delta=event.text,
                logprobs=pieces,
            )
            return
        item = self._calls.get(event.index)
        if item is None:
            yield from self._close_text()
            call = ToolCall(event.id or item_id("call"), event.name or "", "")
            item = call_item(item_id("fc"), call, "in_progress")
            self._calls[event.index] = item
            self.items.append(item)
            yield self._event(
                "response.output_item.added", output_index=len(self.items) - 1, item=dict(item)
            )
        if event.arguments:
            item["arguments"] += event.arguments
            yield self._event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=self.items.index(item),
                delta=event.arguments,
            )

    def finish(self, outcome: Outcome) -> tuple[dict[str, Any], list[str]]:
        """The final response object, and the events still to send: every open item closes
        (only the last can have been cut short), then response.completed (or
        response.incomplete) carries the object."""
        status, incomplete = status_of(outcome.finish_reason)
        events: list[str] = []
        if not self.items:  # an empty answer is still one (empty) message, as when not streamed
            events += self._begin_text()
        self._text = None
        last = self.items[-1]
        for item in self.items:
            if item["status"] == "in_progress":
                cut = incomplete and item is last
                events += self._close(item, "incomplete" if cut else "completed")
        body = self.head.body(
            status,
            self.items,
            usage=outcome.usage,
            incomplete=incomplete,
            completed_at=int(time.time()),
        )
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(kind, response=body))
        return body, events

    def error(self, exc: AppError) -> Iterator[str]:
        yield self._event("error", code=exc.code, message=exc.detail, param=None)
