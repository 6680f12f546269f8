"""AWS Bedrock Converse / ConverseStream, through the async AWS SDK (aiobotocore).

The canonical conversation in Converse's terms: system text to `system`, parts to content
blocks (text, image bytes, toolUse, toolResult; tool results travel in user messages), tools
and tool choice to `toolConfig`, a response format to a forced tool whose input is the answer,
sampling and stop sequences to `inferenceConfig`, `user` to `requestMetadata`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from mtai.providers.egress import EgressPolicy, EgressRefused, connector_args
from mtai.providers.llm.base import (
    UNREACHABLE,
    Completion,
    CompletionRequest,
    Delta,
    Message,
    StreamEnd,
    StreamEvent,
    ToolCallDelta,
    UpstreamError,
    Usage,
)
from mtai.providers.llm.capabilities import Support, table
from mtai.providers.llm.conversation import (
    Generation,
    ImagePart,
    Part,
    TextPart,
    ToolCall,
    ToolResult,
)

_RETRYABLE = {
    "ThrottlingException": 429,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ModelNotReadyException": 503,
    "ModelTimeoutException": 504,
}
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# Converse's ImageFormat enum, by the media type of a data URL.
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
# Botocore checks lengths but not patterns; these are the service model's, so a value Bedrock
# would refuse is refused here with a sentence instead of an upstream ValidationException.
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_METADATA_VALUE = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}", re.ASCII)
_JSON_TOOL = "json_answer"  # the forced tool of a response format that names none usable


def _refused(message: str) -> UpstreamError:
    """The request cannot be put to Bedrock: the caller's to change, not the upstream's fault."""
    return UpstreamError(message, status=400, retryable=False, server_fault=False)


def _error_code(exc: ClientError) -> str:
    code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
    # An AWS error code is a word; anything else came from an endpoint that is not AWS.
    return code if re.fullmatch(r"[A-Za-z.]{1,64}", code) else "Unknown"


@contextlib.contextmanager
def _aws_errors() -> Iterator[None]:
    try:
        yield
    except EgressRefused as exc:
        raise UpstreamError(str(exc), retryable=False, server_fault=False) from exc
    except ClientError as exc:
        code = _error_code(exc)
        status = _RETRYABLE.get(code) or int(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        )
        raise UpstreamError(
            f"bedrock {code}",
            status=status,
            retryable=code in _RETRYABLE,
            detail=str(exc.response.get("Error", {}).get("Message", ""))[:300],
        ) from exc
    except ParamValidationError as exc:
        # Botocore's own check of the request against the service model, before any call: the
        # caller's input (an empty stop sequence, an over-long tool id), said in our words.
        raise _refused(
            f"the request does not fit Bedrock's Converse API: {str(exc)[:300]}"
        ) from exc
    except (ReadTimeoutError, EndpointConnectionError, ConnectTimeoutError) as exc:
        raise UpstreamError(UNREACHABLE, retryable=True, detail=str(exc)[:300]) from exc
    except (BotoCoreError, ValueError) as exc:
        raise UpstreamError("bedrock call failed", retryable=True, detail=str(exc)[:300]) from exc
    except RecursionError as exc:
        # JSON (tool arguments, schemas) nested deeper than botocore's serializer can go.
        raise _refused("the request nests JSON deeper than Bedrock's client can send") from exc
    except (KeyError, TypeError) as exc:  # botocore hands an unparsable body over as a dict
        raise UpstreamError(
            "bedrock sent a malformed response", retryable=True, detail=f"missing {exc}"
        ) from exc


# -- request translation ------------------------------------------------------------------


def _image(part: ImagePart) -> dict[str, Any]:
    try:
        media_type, payload = part.data()
    except ValueError as exc:
        raise _refused(
            "Bedrock takes images only as base64 data URLs (data:image/png;base64,...)"
        ) from exc
    image_format = _IMAGE_FORMATS.get(media_type.strip().lower())
    if image_format is None:
        raise _refused(f"Bedrock takes png, jpeg, gif and webp images, not {media_type[:60]!r}")
    try:
        raw = base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise _refused("an image's data URL does not hold valid base64") from exc
    if not raw:
        raise _refused("an image's data URL is empty")
    # Raw bytes: botocore base64-encodes blobs on the wire itself.
    return {"format": image_format, "source": {"bytes": raw}}


def _arguments(call: ToolCall) -> dict[str, Any]:
    """A tool call's arguments as the JSON object Converse's toolUse.input takes."""
    value = call.arguments_object()
    if value is None:
        raise _refused(
            f"the arguments of tool call {call.id[:64]!r} are not a JSON object; "
            "Bedrock takes them only as one"
        )
    return value


def _tool_result(result: ToolResult) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for part in result.content:
        if isinstance(part, ImagePart):
            content.append({"image": _image(part)})
        elif part.text:  # Bedrock refuses blank text blocks
            content.append({"text": part.text})
    block: dict[str, Any] = {"toolUseId": result.call_id, "content": content}
    if result.is_error:
        # Only "error" is sent: `status` is a Claude-only field on Bedrock, and success is
        # what every model assumes without it.
        block["status"] = "error"
    return {"toolResult": block}


def _block(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"text": part.text} if part.text else None
    if isinstance(part, ImagePart):
        return {"image": _image(part)}
    if isinstance(part, ToolCall):
        return {"toolUse": {"toolUseId": part.id, "name": part.name, "input": _arguments(part)}}
    return _tool_result(part)


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Converse messages: tool results in user messages, and consecutive messages of one role
    merged, since Converse requires user and assistant to alternate."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [b for b in map(_block, message.parts) if b is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _tool_spec(
    name: str, description: str | None, schema: Any, strict: bool | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "inputSchema": {"json": dict(schema)}}
    if description:
        spec["description"] = description
    if strict is not None:
        spec["strict"] = strict
    return {"toolSpec": spec}


def _response_format_tool(generation: Generation) -> dict[str, Any] | None:
    """A response format as a forced tool: its input is the JSON answer."""
    fmt = generation.response_format
    if fmt is None or fmt.type == "text":
        return None
    if generation.tools:
        raise _refused(
            "Bedrock answers in JSON through a forced tool, so a request to it cannot carry "
            "both tools and a response_format"
        )
    name = fmt.name if fmt.name and _TOOL_NAME.fullmatch(fmt.name) else _JSON_TOOL
    schema = fmt.schema if fmt.type == "json_schema" and fmt.schema else {"type": "object"}
    description = fmt.description or "Give the answer as this tool's input."
    return {
        "tools": [_tool_spec(name, description, schema, fmt.strict)],
        "toolChoice": {"tool": {"name": name}},
    }


def _tool_config(generation: Generation) -> dict[str, Any] | None:
    choice = generation.tool_choice
    # Converse has no "none": offering no tools is how a call is ruled out.
    if not generation.tools or (choice is not None and choice.mode == "none"):
        return None
    config: dict[str, Any] = {
        "tools": [
            _tool_spec(t.name, t.description, t.parameters, t.strict) for t in generation.tools
        ]
    }
    if choice is not None and choice.mode == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice is not None and choice.mode == "required":
        config["toolChoice"] = {"any": {}}
    elif choice is not None and choice.mode == "tool":
        config["toolChoice"] = {"tool": {"name": choice.name or ""}}
    return config


@dataclass(frozen=True)
class _Call:
    """The Converse arguments of one request, and the forced tool carrying a response
    format's JSON answer (None when the request asked for none)."""

    args: dict[str, Any]
    json_tool: str | None


def _translate(request: CompletionRequest) -> _Call:
    g = request.generation
    args: dict[str, Any] = {
        "modelId": request.model,
        "messages": _messages(request.messages),
        "inferenceConfig": {"maxTokens": request.max_tokens},
    }
    system = [{"text": m.content} for m in request.messages if m.role == "system" and m.content]
    if system:
        args["system"] = system
    inference = args["inferenceConfig"]
    if g.temperature is not None:
        inference["temperature"] = min(g.temperature, 1.0)  # Converse's range is 0-1
    if g.top_p is not None:
        inference["topP"] = g.top_p
    if g.stop:
        inference["stopSequences"] = list(g.stop)
    if g.user is not None:
        if not _METADATA_VALUE.fullmatch(g.user):
            raise _refused(
                "Bedrock takes a `user` of at most 256 letters, digits, spaces and "
                ":_@$#=/+,-. characters"
            )
        args["requestMetadata"] = {"user": g.user}
    json_config = _response_format_tool(g)
    config = json_config or _tool_config(g)
    if config is not None:
        args["toolConfig"] = config
    elif any(m.tool_calls or m.tool_results for m in request.messages):
        # Converse refuses toolUse and toolResult blocks without a toolConfig.
        if g.tools:
            raise _refused(
                "Bedrock cannot be told not to call tools (tool_choice none) in a "
                "conversation that holds tool calls or results: it reads them only with the "
                "tools offered"
            )
        raise _refused(
            "Bedrock reads a conversation that holds tool calls or results only with the "
            "tools' definitions: send `tools` with it"
        )
    json_tool = json_config["toolChoice"]["tool"]["name"] if json_config else None
    return _Call(args, json_tool)


# -- response translation -----------------------------------------------------------------


def _usage(raw: Any) -> Usage | None:
    """Converse's inputTokens counts only the input that was neither read from nor written
    to the prompt cache: cacheReadInputTokens and cacheWriteInputTokens are reported beside
    it (totalTokens is the sum of all four), as Anthropic does. The canonical prompt count
    includes them, so they are added up."""
    if not raw:
        return None
    read = int(raw.get("cacheReadInputTokens") or 0)
    written = int(raw.get("cacheWriteInputTokens") or 0)
    return Usage(
        int(raw["inputTokens"]) + read + written,
        int(raw["outputTokens"]),
        cached_read_tokens=read,
        cached_write_tokens=written,
    )


def _finish(reason: Any, json_tool: str | None) -> str:
    finish = _FINISH.get(str(reason or ""), "stop")
    # The forced tool of a response format is the answer, not a call for the client.
    return "stop" if json_tool is not None and finish == "tool_calls" else finish


def _stream_events(
    event: dict[str, Any], call: _Call, tools: dict[int, int], filled: set[int]
) -> Iterator[Delta | ToolCallDelta]:
    """The canonical events of one ConverseStream event (a response format's tool input
    comes out as text)."""
    if "contentBlockStart" in event:
        start = event["contentBlockStart"]
        use = start["start"].get("toolUse")
        if use is not None:
            index = tools[int(start["contentBlockIndex"])] = len(tools)
            if call.json_tool is None:
                yield ToolCallDelta(index, id=use["toolUseId"], name=use["name"])
    elif "contentBlockDelta" in event:
        block = int(event["contentBlockDelta"]["contentBlockIndex"])
        delta = event["contentBlockDelta"]["delta"]
        if "toolUse" in delta:
            piece = str(delta["toolUse"]["input"])
            if block not in tools:
                raise KeyError(f"contentBlockStart of block {block}")
            if piece:
                filled.add(block)
                yield from _piece(call, tools[block], piece)
        elif delta.get("text"):
            yield Delta(str(delta["text"]))
    elif "contentBlockStop" in event:
        block = int(event["contentBlockStop"]["contentBlockIndex"])
        if block in tools and block not in filled:
            filled.add(block)
            yield from _piece(call, tools[block], "{}")


def _piece(call: _Call, index: int, arguments: str) -> Iterator[Delta | ToolCallDelta]:
    if call.json_tool is not None:
        yield Delta(arguments)
    else:
        yield ToolCallDelta(index, arguments=arguments)


SUPPORT = table(
    # OpenAI's 0-2 range is cut to Converse's 0-1 (said as such in the matrix).
    temperature=Support.TRANSLATED,
    top_p=Support.NATIVE,
    stop=Support.NATIVE,
    user=Support.TRANSLATED,
    tools=Support.TRANSLATED,
    tool_choice__auto=Support.TRANSLATED,
    tool_choice__none=Support.TRANSLATED,
    tool_choice__required=Support.TRANSLATED,
    tool_choice__tool=Support.TRANSLATED,
    tool_messages=Support.TRANSLATED,
    response_format__json_object=Support.TRANSLATED,
    response_format__json_schema=Support.TRANSLATED,
    # Bytes only: Bedrock takes an image as bytes or from S3, and fetching a URL the client
    # chose from our network would be a server-side request forgery.
    image_data=Support.TRANSLATED,
)


class BedrockProvider:
    """Bedrock for the platform (credentials from the AWS chain when the model has no key) or
    for a tenant's own credential (`tenant_credential`: its key id and secret, never the
    platform's AWS identity). `egress` guards an endpoint URL the tenant chose.

    A provider evicted from the registry's cache is closed while requests may still use it:
    its AWS client is then closed when the last of them ends, and opened again (and closed
    after use) by a late caller.
    """

    name = "bedrock"
    support = SUPPORT

    def __init__(
        self,
        region: str,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        timeout: float = 60.0,
        tenant_credential: bool = False,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._refusal: str | None = None
        if tenant_credential and not (access_key and secret_key):
            self._refusal = (
                "this tenant's Bedrock credential needs an access key id and a secret: enter it "
                "again as ACCESS_KEY_ID:SECRET_ACCESS_KEY (PUT /api/v1/provider-credentials/"
                "bedrock)"
            )
        self._endpoint_url = endpoint_url
        self._egress = egress
        options: dict[str, Any] = {
            "retries": {"total_max_attempts": 1},  # our router retries, with its own policy
            "read_timeout": timeout,
            "connect_timeout": min(timeout, 10.0),
        }
        if egress is not None:
            # Every connection resolved and checked by the guard; no proxy hides the target.
            options |= {"connector_args": connector_args(egress), "proxies": {}}
        self._kwargs: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "config": AioConfig(**options),
        }
        if access_key and secret_key:
            self._kwargs |= {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._opening = asyncio.Lock()
        self._active = 0
        self._retired = False

    async def _bedrock(self) -> Any:
        if self._refusal is not None:
            raise UpstreamError(self._refusal, retryable=False, server_fault=False)
        if self._egress is not None and self._endpoint_url is not None:
            try:
                self._egress.check_url(self._endpoint_url)
            except EgressRefused as exc:
                raise UpstreamError(str(exc), retryable=False, server_fault=False) from exc
        async with self._opening:
            if self._client is None:
                self._client = await self._stack.enter_async_context(
                    get_session().create_client("bedrock-runtime", **self._kwargs)
                )
        return self._client

    @contextlib.asynccontextmanager
    async def _in_use(self) -> AsyncIterator[Any]:
        self._active += 1
        try:
            yield await self._bedrock()
        finally:
            self._active -= 1
            if self._retired and self._active == 0:
                await self._close_client()

    async def _close_client(self) -> None:
        async with self._opening:
            await self._stack.aclose()
            self._stack = contextlib.AsyncExitStack()
            self._client = None

    async def complete(self, request: CompletionRequest) -> Completion:
        call = _translate(request)
        async with self._in_use() as client:
            return await self._complete(client, call)

    async def _complete(self, client: Any, call: _Call) -> Completion:
        with _aws_errors():
            body = await client.converse(**call.args)
            texts: list[str] = []
            calls: list[ToolCall] = []
            for block in body["output"]["message"]["content"]:
                if "text" in block:
                    texts.append(block["text"])
                elif "toolUse" in block:
                    use = block["toolUse"]
                    arguments = json.dumps(use["input"], ensure_ascii=False)
                    if call.json_tool is not None:
                        texts.append(arguments)
                    else:
                        calls.append(ToolCall(use["toolUseId"], use["name"], arguments))
            return Completion(
                text="".join(texts),
                usage=_usage(body.get("usage")),
                finish_reason=_finish(body.get("stopReason"), call.json_tool),
                tool_calls=tuple(calls),
            )

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        call = _translate(request)
        async with (
            self._in_use() as client,
            contextlib.aclosing(self._stream(client, call)) as events,
        ):
            async for event in events:
                yield event

    async def _stream(self, client: Any, call: _Call) -> AsyncGenerator[StreamEvent, None]:
        usage, finish = None, "stop"
        # contentBlockIndex of each toolUse block -> its position among the answer's tool
        # calls; blocks whose input has begun (an empty input still has to read "{}").
        tools: dict[int, int] = {}
        filled: set[int] = set()
        with _aws_errors():
            response = await client.converse_stream(**call.args)
            stream = response["stream"]
            try:
                async for event in stream:
                    for out in _stream_events(event, call, tools, filled):
                        yield out
                    if "messageStop" in event:
                        finish = _finish(event["messageStop"].get("stopReason"), call.json_tool)
                    elif "metadata" in event:
                        usage = _usage(event["metadata"].get("usage")) or usage
            finally:
                # Closing the HTTP body is what stops a cancelled generation upstream.
                close = getattr(getattr(stream, "_raw_stream", None), "close", None)
                if callable(close):
                    close()
        yield StreamEnd(usage, finish)

    async def aclose(self) -> None:
        self._retired = True
        if self._active == 0:
            await self._close_client()
