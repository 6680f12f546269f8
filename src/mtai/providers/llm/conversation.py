"""The canonical conversation: the one model every ingress API translates into and every
provider adapter translates out of (see ARCHITECTURE.md, "The canonical conversation").

A message is a role and a list of parts (text, image, tool call, tool result). Tool results
travel in messages of role "tool"; an assistant message may hold text and tool calls. The
request's settings (`Generation`) carry everything that changes the output besides the
messages: tools, tool choice, response format, sampling, stop sequences, seed, user.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image by `url`: an https URL or a `data:<media type>;base64,...` URL."""

    url: str
    detail: str | None = None  # OpenAI's "low" / "high" / "auto"

    @property
    def is_data(self) -> bool:
        return self.url.startswith("data:")

    def data(self) -> tuple[str, str]:
        """(media type, base64 payload) of a data URL; ValueError for anything else."""
        header, sep, payload = self.url.partition(",")
        if not self.is_data or not sep or not header.endswith(";base64"):
            raise ValueError("not a base64 data URL")
        return header[5:].removesuffix(";base64"), payload


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for. `arguments` is the JSON text of the arguments object."""

    id: str
    name: str
    arguments: str

    def arguments_object(self) -> dict[str, Any] | None:
        """The arguments as the JSON object they should be: {} for blank text (a call without
        arguments, as some models write it); None for text that is not a JSON object or is
        nested deeper than the parser goes. Each caller decides what None becomes."""
        if not self.arguments.strip():
            return {}
        try:
            value = json.loads(self.arguments)
        except (ValueError, RecursionError):
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class ToolResult:
    """The caller's answer to the tool call `call_id`: text and, where an API allows, images."""

    call_id: str
    content: tuple[TextPart | ImagePart, ...]
    is_error: bool = False

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


Part = TextPart | ImagePart | ToolCall | ToolResult


@dataclass(frozen=True, init=False)
class Message:
    """`Message("user", "hi")` for plain text, `Message("assistant", [parts...])` otherwise."""

    role: Role
    parts: tuple[Part, ...]

    def __init__(self, role: Role, content: str | Iterable[Part]) -> None:
        object.__setattr__(self, "role", role)
        parts = (TextPart(content),) if isinstance(content, str) else tuple(content)
        object.__setattr__(self, "parts", parts)

    @property
    def content(self) -> str:
        """The message's text (its text parts joined); tool calls and images excluded."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [p for p in self.parts if isinstance(p, ToolCall)]

    @property
    def tool_results(self) -> list[ToolResult]:
        return [p for p in self.parts if isinstance(p, ToolResult)]

    @property
    def images(self) -> list[ImagePart]:
        found = [p for p in self.parts if isinstance(p, ImagePart)]
        for result in self.tool_results:
            found += [p for p in result.content if isinstance(p, ImagePart)]
        return found


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; `parameters` is a JSON schema of its arguments."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None


@dataclass(frozen=True)
class ToolChoice:
    """auto: the model decides; none: no call; required: some call; tool: the call `name`."""

    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


@dataclass(frozen=True)
class ResponseFormat:
    """json_object: any JSON object; json_schema: JSON valid against `schema`."""

    type: Literal["text", "json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None
    name: str | None = None
    description: str | None = None
    strict: bool | None = None


@dataclass(frozen=True)
class Generation:
    """Every setting besides the messages that shapes the answer. None/empty: not asked for."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[str, float] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    user: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


def features(messages: Sequence[Message], generation: Generation) -> list[str]:
    """The canonical features a request uses, by the names of the capability table
    (`capabilities.FEATURES`): what a provider must honour for this request."""
    used: list[str] = []
    g = generation
    for name, value in (
        ("temperature", g.temperature),
        ("top_p", g.top_p),
        ("top_k", g.top_k),
        ("seed", g.seed),
        ("presence_penalty", g.presence_penalty),
        ("frequency_penalty", g.frequency_penalty),
        ("logit_bias", g.logit_bias),
        ("user", g.user),
        ("parallel_tool_calls", g.parallel_tool_calls),
    ):
        if value is not None:
            used.append(name)
    if g.stop:
        used.append("stop")
    if g.logprobs or g.top_logprobs is not None:
        used.append("logprobs")
    if g.tools:
        used.append("tools")
    if g.tool_choice is not None:
        used.append(f"tool_choice.{g.tool_choice.mode}")
    if g.response_format is not None and g.response_format.type != "text":
        used.append(f"response_format.{g.response_format.type}")
        if g.tools:
            # Where JSON output is itself a forced tool call, the caller's tools cannot also be
            # offered: the pair is a feature of its own.
            used.append("response_format.with_tools")
    if any(m.tool_calls or m.tool_results for m in messages):
        used.append("tool_messages")
    images = [image for m in messages for image in m.images]
    if any(i.is_data for i in images):
        used.append("image_data")
    if any(not i.is_data for i in images):
        used.append("image_url")
    return used


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Tokens as the upstream counted them. `prompt_tokens` is every input token, cached ones
    included; `cached_read_tokens` and `cached_write_tokens` are the parts of it read from or
    written to the provider's prompt cache. `reasoning_tokens` is the part of
    `completion_tokens` spent thinking."""

    prompt_tokens: int
    completion_tokens: int
    cached_read_tokens: int = 0
    cached_write_tokens: int = 0
    reasoning_tokens: int = 0


# finish reasons: "stop", "length", "tool_calls", "content_filter" (OpenAI's words)


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage | None  # None when the upstream did not say
    finish_reason: str = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Any = None  # OpenAI's `choices[].logprobs` object, where the upstream gave one


@dataclass(frozen=True)
class Delta:
    text: str
    logprobs: Any = None  # OpenAI's chunk `logprobs.content` entries, where given


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of the `index`-th tool call of the answer (0-based): the first piece carries
    `id` and `name`, every piece may carry more of the `arguments` JSON text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class StreamEnd:
    usage: Usage | None
    finish_reason: str = "stop"


StreamEvent = Delta | ToolCallDelta | StreamEnd
