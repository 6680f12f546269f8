"""OpenAI Chat Completions <-> the canonical conversation.

The request schema of `POST /v1/chat/completions`, its translation into a `ChatInput`, and the
translation of an `Outcome` or of stream events back into OpenAI's JSON and SSE chunks. The
router only validates, calls `to_chat_input`, calls the gateway and calls the writers here.

Nothing is dropped in silence: a field of OpenAI's API that mtai does not implement is refused
with 400 `unsupported_parameter` naming it, unless the request says `drop_params` and the field
only tunes the answer (then it is dropped and named in `X-Mtai-Dropped-Params`).
"""

from __future__ import annotations

import binascii
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mtai.config import Settings
from mtai.errors import AppError, InvalidInput, TooLarge
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
from mtai.services.gateway import (
    DROPPED_HEADER,
    ChatInput,
    Outcome,
    RagOptions,
    UnsupportedParameter,
)

NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
MAX_TOOLS = 128  # OpenAI's own limit
MAX_STOP = 4
MAX_LOGIT_BIAS = 300
MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_NODES = 5_000
MAX_URL_CHARS = 8_192
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

# Fields of OpenAI's API that mtai does not honour. Those that only tune how (or where) an
# answer is produced may be dropped on request; the others change what the answer is (audio,
# web search, predicted output, the legacy function-calling protocol), so they are refused
# even with `drop_params`: the client would get something else than it asked for.
DROPPABLE_FIELDS: Mapping[str, str] = {
    "service_tier": "upstream processing tiers are the catalog's choice, not the request's",
    "store": "mtai does not store completions at the upstream",
    "metadata": "mtai does not store completions at the upstream",
    "reasoning_effort": "reasoning settings are not forwarded",
    "verbosity": "verbosity settings are not forwarded",
    "prompt_cache_key": "upstream prompt-cache routing is not forwarded",
    "prompt_cache_retention": "upstream prompt-cache retention is not forwarded",
    "prompt_cache_options": "upstream prompt-cache options are not forwarded",
    "moderation": "upstream moderation policies are not forwarded",
}
REFUSED_FIELDS: Mapping[str, str] = {
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "functions": "the deprecated `functions` is not supported; send `tools`",
    "function_call": "the deprecated `function_call` is not supported; send `tool_choice`",
}

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}
_DATA_URL = re.compile(r"^data:([a-z]+/[a-z0-9.+-]+);base64,", re.IGNORECASE)


# -- request schema -----------------------------------------------------------------------


class _Strict(BaseModel):
    # Inside messages and tools an unknown key is a mistake worth a 400, as at OpenAI.
    model_config = ConfigDict(extra="forbid")


class TextContent(_Strict):
    type: Literal["text"]
    text: str


class RefusalContent(_Strict):
    type: Literal["refusal"]
    refusal: str


class ImageURL(_Strict):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImageContent(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class OtherContent(BaseModel):
    """A part of a kind OpenAI knows (audio, file) that mtai does not take: refused by name."""

    model_config = ConfigDict(extra="allow")
    type: Literal["input_audio", "file"]


UserContent = Annotated[TextContent | ImageContent | OtherContent, Field(discriminator="type")]
AssistantContent = Annotated[TextContent | RefusalContent, Field(discriminator="type")]


class FunctionCall(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    arguments: str


class AssistantToolCall(_Strict):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Strict):
    role: Literal["system", "developer"]
    content: str | list[TextContent]
    name: str | None = None


class UserMessage(_Strict):
    role: Literal["user"]
    content: str | list[UserContent]
    name: str | None = None


class AssistantMessage(_Strict):
    role: Literal["assistant"]
    content: str | list[AssistantContent] | None = None
    tool_calls: list[AssistantToolCall] | None = Field(default=None, max_length=MAX_TOOLS)
    refusal: str | None = None  # what the model declined earlier: not part of the context
    name: str | None = None
    function_call: Any = None
    audio: Any = None


class ToolMessage(_Strict):
    role: Literal["tool"]
    tool_call_id: str = Field(min_length=1, max_length=256)
    content: str | list[TextContent]
    # Some clients (LangChain) name the tool here; the call id already says which call it is.
    name: str | None = None


class FunctionMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["function"]


ChatMessage = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionDefinition(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function", "custom"]
    function: FunctionDefinition | None = None
    custom: Any = None


class NamedFunction(_Strict):
    name: str = Field(pattern=NAME_PATTERN)


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function", "custom", "allowed_tools"]
    function: NamedFunction | None = None


class JSONSchemaFormat(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = Field(default=None, max_length=10_000)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatIn(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(BaseModel):
    # include_obfuscation and future options only shape the stream's padding: harmless to ignore.
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Unknown fields are kept so that `to_chat_input` can refuse (or drop) each by name.
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=100)
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stop: str | list[str] | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    modalities: list[Literal["text", "audio"]] | None = Field(default=None, max_length=2)
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormatIn | None = None
    # mtai's extensions (the SDK sends them with extra_body=...).
    use_rag: bool = False
    collection_ids: list[uuid.UUID] | None = Field(default=None, max_length=100)
    rag_top_k: Annotated[int, Field(ge=1, le=20)] | None = None
    drop_params: bool = False

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(not s or len(s) > 1_000 for s in stops):
            raise ValueError("a stop sequence must have 1 to 1000 characters")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            if len(value) > MAX_LOGIT_BIAS:
                raise ValueError(f"at most {MAX_LOGIT_BIAS} entries")
            if any(not (k.isascii() and k.isdigit() and len(k) <= 10) for k in value):
                raise ValueError("keys must be token ids (decimal integers)")
        return value


# -- request translation ------------------------------------------------------------------


@dataclass(frozen=True)
class Translated:
    chat: ChatInput
    dropped: tuple[str, ...]  # request fields dropped here (drop_params), before the gateway


def to_chat_input(
    body: ChatCompletionRequest, settings: Settings, *, use_cache: bool
) -> Translated:
    """The canonical request of an OpenAI one; 400/413 for what cannot be honoured."""
    dropped = _check_fields(body)
    if body.n not in (None, 1):
        raise UnsupportedParameter(
            "n > 1 is not supported; send one request per completion.", param="n"
        )
    if body.modalities is not None and "audio" in body.modalities:
        raise UnsupportedParameter("modalities: audio output is not supported.", param="modalities")
    messages, named = _messages(body, settings)
    if named:
        dropped += ("messages.name",)
    rag = (
        RagOptions(collection_ids=body.collection_ids, top_k=body.rag_top_k or settings.rag_top_k)
        if body.use_rag
        else None
    )
    chat = ChatInput(
        messages=messages,
        model=body.model,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        generation=_generation(body),
        use_cache=use_cache and not body.stream,
        rag=rag,
        drop_params=body.drop_params,
    )
    return Translated(chat, dropped)


def _check_fields(body: ChatCompletionRequest) -> tuple[str, ...]:
    """Refuses (or with drop_params drops) every field given that mtai does not honour."""
    dropped: list[str] = []
    for name, value in (body.model_extra or {}).items():
        if value is None:
            continue  # null is what the SDKs send for "not given"
        if name in REFUSED_FIELDS:
            raise UnsupportedParameter(f"{name}: {REFUSED_FIELDS[name]}.", param=name)
        if not body.drop_params:
            reason = DROPPABLE_FIELDS.get(name, "not a parameter of the Chat Completions API")
            raise UnsupportedParameter(
                f"Unsupported parameter '{name}': {reason}. Remove it, or send "
                '"drop_params": true to drop what cannot be honoured.',
                param=name,
            )
        dropped.append(name)
    return tuple(dropped)


def _generation(body: ChatCompletionRequest) -> Generation:
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidInput("top_logprobs requires logprobs: true.")
    if body.user and body.safety_identifier and body.user != body.safety_identifier:
        raise InvalidInput("user and safety_identifier differ; send one of them.")
    tools = tuple(_tool(i, t) for i, t in enumerate(body.tools or []))
    names = {t.name for t in tools}
    if len(names) != len(tools):
        raise InvalidInput("tools: two tools have the same name.")
    if not tools and body.tool_choice is not None:
        raise InvalidInput("tool_choice is only allowed when tools are given.")
    if not tools and body.parallel_tool_calls is not None:
        raise InvalidInput("parallel_tool_calls is only allowed when tools are given.")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return Generation(
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stop,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.logit_bias,
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs,
        user=body.user or body.safety_identifier,
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice, names),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body.response_format),
    )


def _tool(index: int, tool: Tool) -> ToolSpec:
    if tool.type != "function" or tool.function is None:
        raise UnsupportedParameter(
            f"tools[{index}]: only function tools are supported.", param="tools"
        )
    f = tool.function
    parameters = f.parameters if f.parameters is not None else {"type": "object", "properties": {}}
    check_schema(parameters, f"tools[{index}].function.parameters")
    return ToolSpec(name=f.name, description=f.description, parameters=parameters, strict=f.strict)


def _tool_choice(
    choice: Literal["auto", "none", "required"] | NamedToolChoice | None, names: set[str]
) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return ToolChoice(mode=choice)
    if choice.type != "function" or choice.function is None:
        raise UnsupportedParameter(
            f"tool_choice: type '{choice.type}' is not supported; name a function tool.",
            param="tool_choice",
        )
    if choice.function.name not in names:
        raise InvalidInput(
            f"tool_choice names the function '{choice.function.name}', which is not in tools."
        )
    return ToolChoice(mode="tool", name=choice.function.name)


def _response_format(given: ResponseFormatIn | None) -> ResponseFormat | None:
    if given is None:
        return None
    if given.type != "json_schema":
        if given.json_schema is not None:
            raise InvalidInput("response_format.json_schema is only allowed with type json_schema.")
        return ResponseFormat(type=given.type)
    spec = given.json_schema
    if spec is None or spec.schema_ is None:
        raise InvalidInput("response_format json_schema needs json_schema.name and .schema.")
    check_schema(spec.schema_, "response_format.json_schema.schema")
    return ResponseFormat(
        type="json_schema",
        schema=spec.schema_,
        name=spec.name,
        description=spec.description,
        strict=spec.strict,
    )


def check_schema(schema: Any, where: str) -> None:
    """A JSON schema must be an object of bounded depth and size (an attacker's 10,000-deep
    schema would otherwise reach every adapter and upstream). Walked without recursion."""
    if not isinstance(schema, dict):
        raise InvalidInput(f"{where} must be a JSON object.")
    pending: list[tuple[Any, int]] = [(schema, 1)]
    nodes = 1
    while pending:
        node, depth = pending.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise InvalidInput(f"{where} is nested deeper than {MAX_SCHEMA_DEPTH} levels.")
        children = list(node.values()) if isinstance(node, dict) else node
        if isinstance(children, list):
            nodes += len(children)
            if nodes > MAX_SCHEMA_NODES:
                raise InvalidInput(f"{where} is too large (over {MAX_SCHEMA_NODES} values).")
            pending.extend((child, depth + 1) for child in children)


def _messages(body: ChatCompletionRequest, settings: Settings) -> tuple[list[Message], bool]:
    """The canonical messages, and whether participant names were dropped (drop_params)."""
    images = 0
    named = False
    out: list[Message] = []
    for index, message in enumerate(body.messages):
        where = f"messages[{index}]"
        if isinstance(message, FunctionMessage):
            raise UnsupportedParameter(
                f"{where}: the deprecated 'function' role is not supported; use tool messages.",
                param="messages",
            )
        if not isinstance(message, ToolMessage) and message.name is not None:
            if not body.drop_params:
                raise UnsupportedParameter(
                    f"{where}.name: participant names are not supported; remove it, or send "
                    '"drop_params": true.',
                    param="messages",
                )
            named = True
        parts = _parts(message, where, settings)
        images += sum(isinstance(p, ImagePart) for p in parts)
        if images > settings.max_images_per_request:
            raise InvalidInput(
                f"Too many images: at most {settings.max_images_per_request} per request."
            )
        text = sum(len(p.text) for p in parts if isinstance(p, TextPart | ToolResult))
        if text > settings.max_message_chars:
            raise InvalidInput(f"{where} is longer than {settings.max_message_chars} characters.")
        role: Role = "tool" if isinstance(message, ToolMessage) else _ROLES[message.role]
        out.append(Message(role, parts))
    last = out[-1]
    if last.role == "assistant":
        raise InvalidInput(
            "The last message is the assistant's; end with a user, system or tool message."
        )
    return out, named


def _parts(
    message: SystemMessage | UserMessage | AssistantMessage | ToolMessage,
    where: str,
    settings: Settings,
) -> list[Part]:
    if isinstance(message, ToolMessage):
        text = _text(message.content)
        return [ToolResult(call_id=message.tool_call_id, content=(TextPart(text),))]
    if isinstance(message, AssistantMessage):
        if message.function_call is not None or message.audio is not None:
            field_name = "function_call" if message.function_call is not None else "audio"
            raise UnsupportedParameter(
                f"{where}.{field_name} is not supported; send tool_calls.", param="messages"
            )
        parts: list[Part] = []
        if isinstance(message.content, str):
            parts.append(TextPart(message.content))
        elif message.content:
            text = "".join(p.text for p in message.content if isinstance(p, TextContent))
            parts.append(TextPart(text))
        parts += [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in message.tool_calls or []
        ]
        if not parts:
            raise InvalidInput(f"{where}: an assistant message needs content or tool_calls.")
        return parts
    if isinstance(message, SystemMessage):
        return [TextPart(_text(message.content))]
    if isinstance(message.content, str):
        return [TextPart(message.content)]
    out: list[Part] = []
    for number, part in enumerate(message.content):
        if isinstance(part, TextContent):
            out.append(TextPart(part.text))
        elif isinstance(part, ImageContent):
            where_part = f"{where}.content[{number}]"
            out.append(image_part(part.image_url.url, part.image_url.detail, where_part, settings))
        else:
            raise UnsupportedParameter(
                f"{where}.content[{number}]: '{part.type}' parts are not supported.",
                param="messages",
            )
    return out


def _text(content: str | list[TextContent]) -> str:
    return content if isinstance(content, str) else "".join(p.text for p in content)


def image_part(url: str, detail: str | None, where: str, settings: Settings) -> ImagePart:
    """An https URL, or a base64 data URL of a PNG, JPEG, GIF or WebP image whose bytes are
    what the URL says they are and no larger than `max_image_bytes`."""
    if not url.startswith("data:"):
        if len(url) > MAX_URL_CHARS or not re.match(r"^https://[^\s/?#]+", url):
            raise InvalidInput(f"{where}: an image URL must be https (or a base64 data URL).")
        return ImagePart(url=url, detail=detail)
    match = _DATA_URL.match(url)
    if match is None:
        raise InvalidInput(f"{where}: a data URL must read data:<image type>;base64,<data>.")
    media_type = match.group(1).lower()
    if media_type not in IMAGE_TYPES:
        raise InvalidInput(
            f"{where}: image type '{media_type}' is not supported; send {', '.join(IMAGE_TYPES)}."
        )
    payload = url[match.end() :]
    limit = settings.max_image_bytes
    if len(payload) * 3 // 4 > limit + 2:  # refused before decoding anything
        raise TooLarge(f"{where}: the image is larger than {limit} bytes.")
    try:
        raw = binascii.a2b_base64(payload, strict_mode=True)
    except ValueError:  # binascii.Error, or a plain ValueError for non-ASCII characters
        raise InvalidInput(f"{where}: the data URL's payload is not valid base64.") from None
    if len(raw) > limit:
        raise TooLarge(f"{where}: the image is larger than {limit} bytes.")
    if not _looks_like(media_type, raw):
        raise InvalidInput(f"{where}: the data is not a {media_type} image.")
    return ImagePart(url=f"data:{media_type};base64,{payload}", detail=detail)


def _looks_like(media_type: str, raw: bytes) -> bool:
    if media_type == "image/webp":
        return raw[:4] == b"RIFF" and raw[8:12] == b"WEBP"
    return raw.startswith(_MAGIC[media_type])


# -- response translation -----------------------------------------------------------------


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def tool_call_json(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def completion_json(
    outcome: Outcome, completion_id: str, created: int, extra: Mapping[str, Any]
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        # OpenAI's content is null when the answer is only tool calls.
        "content": outcome.text if outcome.text or not outcome.tool_calls else None,
        "refusal": None,
    }
    if outcome.tool_calls:
        message["tool_calls"] = [tool_call_json(c) for c in outcome.tool_calls]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": outcome.model.name,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": outcome.finish_reason,
                "logprobs": outcome.logprobs,
            }
        ],
        "usage": usage_json(outcome.usage),
        "system_fingerprint": None,
        **extra,
    }


@dataclass(frozen=True)
class ChunkWriter:
    """The `chat.completion.chunk` objects of one streamed answer."""

    completion_id: str
    created: int
    model: str
    logprobs: bool

    def chunk(
        self,
        delta: Mapping[str, Any],
        finish: str | None = None,
        logprobs: Any = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": dict(delta), "finish_reason": finish, "logprobs": logprobs}
            ],
            **(extra or {}),
        }

    def start(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        return self.chunk({"role": "assistant", "content": "", "refusal": None}, extra=extra)

    def event(self, event: Delta | ToolCallDelta) -> list[dict[str, Any]]:
        """One canonical stream event as OpenAI's chunks: a tool call opens with its id, name
        and empty arguments, then its arguments come in `index`-keyed pieces."""
        if isinstance(event, Delta):
            logprobs = {"content": event.logprobs, "refusal": None} if self.logprobs else None
            return [self.chunk({"content": event.text}, logprobs=logprobs)]
        chunks = []
        if event.id is not None:
            opening = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name or "", "arguments": ""},
            }
            chunks.append(self.chunk({"tool_calls": [opening]}))
        if event.arguments:
            piece = {"index": event.index, "function": {"arguments": event.arguments}}
            chunks.append(self.chunk({"tool_calls": [piece]}))
        return chunks

    def finish(self, reason: str) -> dict[str, Any]:
        return self.chunk({}, reason)

    @staticmethod
    def error(exc: AppError) -> dict[str, Any]:
        """What a stream that failed after its status line ends with (OpenAI's error shape)."""
        return {
            "error": {"message": exc.detail, "type": "api_error", "param": None, "code": exc.code}
        }

    def usage(self, usage: Usage) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": usage_json(usage),
        }


def dropped_header(gateway_headers: Mapping[str, str], dropped: Sequence[str]) -> dict[str, str]:
    """The gateway's dropped-parameter header with the fields this ingress dropped added, each
    named once; every ingress API builds its header here."""
    headers = dict(gateway_headers)
    if dropped:
        listed = [p.strip() for p in headers.get(DROPPED_HEADER, "").split(",") if p.strip()]
        headers[DROPPED_HEADER] = ", ".join(dict.fromkeys([*listed, *dropped]))
    return headers
