"""The OpenAI-compatible API: the official `openai` SDK works with base_url=.../v1 and an mtai key.

Errors on these routes take OpenAI's shape ({"error": {...}}); see api/errors.py. The chat
route's request schema and its translations live in api/openai_chat.py.
"""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.openai_chat import (
    ChatCompletionRequest,
    ChunkWriter,
    completion_json,
    dropped_header,
    to_chat_input,
)
from mtai.api.streaming import EventStreamResponse, relay, sse
from mtai.services import model_capabilities
from mtai.services.gateway import Outcome, cache_status

router = APIRouter(prefix="/v1", tags=["openai-compatible"])


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=100)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    response: Response,
    x_mtai_cache: Annotated[str | None, Header()] = None,
) -> Response | dict[str, Any]:
    translated = to_chat_input(
        body,
        runtime.settings,
        use_cache=(x_mtai_cache or "").lower() in ("1", "true", "use"),
    )
    gateway = runtime.gateway
    prepared = await gateway.prepare(principal, translated.chat, api="openai")
    headers = dropped_header(gateway.dropped_header(prepared), translated.dropped)
    extra = {"citations": [c.as_json() for c in prepared.citations]} if body.use_rag else {}
    completion_id = f"chatcmpl-{prepared.request_id}"
    created = int(time.time())
    if not body.stream:
        outcome = await gateway.complete(prepared)
        response.headers.update(headers)
        if (cache := cache_status(prepared, outcome)) is not None:
            response.headers["X-Mtai-Cache"] = cache
        return completion_json(outcome, completion_id, created, extra)
    session = await gateway.open_stream(prepared)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    writer = ChunkWriter(completion_id, created, session.model.name, bool(body.logprobs))

    def closing(outcome: Outcome) -> list[str]:
        lines = [sse(writer.finish(outcome.finish_reason))]
        if include_usage:
            lines.append(sse(writer.usage(outcome.usage)))
        return [*lines, sse("[DONE]")]

    lines = relay(
        session,
        # With RAG the sources are known before the answer: clients can show them at once.
        opening=[sse(writer.start(extra))],
        on_event=lambda event: map(sse, writer.event(event)),
        on_error=lambda exc: [sse(writer.error(exc))],
        closing=closing,
    )
    return EventStreamResponse(lines, headers=headers, on_close=session.aclose)


@router.get("/models")
async def list_models(principal: PrincipalDep, runtime: RuntimeDep) -> dict[str, Any]:
    specs = await runtime.gateway.models_for(principal)
    return {
        "object": "list",
        "data": [
            {
                "id": s.name,
                "object": "model",
                "created": 0,
                "owned_by": s.provider,
                # mtai's addition: what requests to the model may use (tools, vision, JSON).
                "capabilities": model_capabilities.effective(s),
                "context_window": s.context_window,
                "max_output_tokens": s.max_output_tokens,
            }
            for s in specs
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
