"""The OpenAI-compatible API: the official `openai` SDK works with base_url=.../v1 and an mtai key.

Errors on these routes take OpenAI's shape ({"error": {...}}); see api/errors.py.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.streaming import EventStreamResponse, sse
from mtai.errors import AppError, InvalidInput
from mtai.providers.llm.base import Message, Role
from mtai.services.gateway import ChatInput, Outcome, RagOptions, cache_status

router = APIRouter(prefix="/v1", tags=["openai-compatible"])
_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # OpenAI clients send many optional fields; unknown ones are accepted and ignored.
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=100)
    messages: list[OpenAIMessage] = Field(min_length=1)
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    # mtai's extensions (the SDK sends them with extra_body=...).
    use_rag: bool = False
    collection_ids: list[uuid.UUID] | None = Field(default=None, max_length=100)
    rag_top_k: Annotated[int, Field(ge=1, le=20)] | None = None


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=100)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"


def _messages(request: ChatCompletionRequest, limit: int) -> list[Message]:
    messages = []
    for index, message in enumerate(request.messages):
        if message.role in ("tool", "function"):
            raise InvalidInput(f"messages[{index}]: tool messages are not supported.")
        if isinstance(message.content, list):
            if any(part.type != "text" for part in message.content):
                raise InvalidInput(f"messages[{index}]: only text content is supported.")
            text = "".join(part.text or "" for part in message.content)
        else:
            text = message.content or ""
        if len(text) > limit:
            raise InvalidInput(f"messages[{index}] is longer than {limit} characters.")
        messages.append(Message(_ROLES[message.role], text))
    if messages[-1].role == "assistant" or not messages[-1].content.strip():
        raise InvalidInput("The last message must be a non-empty system or user message.")
    return messages


def _usage(outcome: Outcome) -> dict[str, int]:
    return {
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
    }


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    response: Response,
    x_mtai_cache: Annotated[str | None, Header()] = None,
) -> Response | dict[str, Any]:
    if body.n not in (None, 1):
        raise InvalidInput("n > 1 is not supported; send one request per completion.")
    chat = ChatInput(
        messages=_messages(body, runtime.settings.max_message_chars),
        model=body.model,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        use_cache=not body.stream and (x_mtai_cache or "").lower() in ("1", "true", "use"),
        rag=RagOptions(
            collection_ids=body.collection_ids, top_k=body.rag_top_k or runtime.settings.rag_top_k
        )
        if body.use_rag
        else None,
    )
    prepared = await runtime.gateway.prepare(principal, chat, api="openai")
    cited = [c.as_json() for c in prepared.citations]
    completion_id = f"chatcmpl-{prepared.request_id}"
    created = int(time.time())
    if not body.stream:
        outcome = await runtime.gateway.complete(prepared)
        if (cache := cache_status(prepared, outcome)) is not None:
            response.headers["X-Mtai-Cache"] = cache
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": outcome.model.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": outcome.text},
                    "finish_reason": outcome.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(outcome),
            **({"citations": cited} if body.use_rag else {}),
        }
    session = await runtime.gateway.open_stream(prepared)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(
        delta: dict[str, Any], finish: str | None = None, extra: dict[str, Any] | None = None
    ) -> str:
        return sse(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": session.model.name,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
                **(extra or {}),
            }
        )

    async def events() -> AsyncGenerator[str, None]:
        # With RAG the sources are known before the answer: clients can show them at once.
        yield chunk(
            {"role": "assistant", "content": ""}, extra={"citations": cited} if body.use_rag else {}
        )
        deltas = session.deltas()
        try:
            async for text in deltas:
                yield chunk({"content": text})
        except AppError as exc:
            yield sse(
                {
                    "error": {
                        "message": exc.detail,
                        "type": "api_error",
                        "param": None,
                        "code": exc.code,
                    }
                }
            )
            return
        finally:
            await deltas.aclose()
        assert session.outcome is not None
        yield chunk({}, session.outcome.finish_reason)
        if include_usage:
            yield sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": session.model.name,
                    "choices": [],
                    "usage": _usage(session.outcome),
                }
            )
        yield sse("[DONE]")

    return EventStreamResponse(events(), on_close=session.aclose)


@router.get("/models")
async def list_models(principal: PrincipalDep, runtime: RuntimeDep) -> dict[str, Any]:
    specs = await runtime.gateway.models_for(principal)
    return {
        "object": "list",
        "data": [
            {"id": s.name, "object": "model", "created": 0, "owned_by": s.provider} for s in specs
        ],
    }


@router.post("/embeddings")
async def embeddings(
    body: EmbeddingRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    result = await runtime.embeddings.embed(principal, body.model, texts)
    data = []
    for index, vector in enumerate(result.vectors):
        value: Any = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode()
            if body.encoding_format == "base64"
            else [float(x) for x in vector]
        )
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": result.model,
        "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
    }
