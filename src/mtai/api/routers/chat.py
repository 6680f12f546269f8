"""The native chat API (the seed's contract): POST /api/v1/chat/, conversations, models."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, status
from fastapi.responses import Response
from pydantic import Field

from mtai.api.deps import PagingDep, PrincipalDep, RuntimeDep
from mtai.api.schemas import CitationOut, Page, ResponseModel, StrictModel
from mtai.api.streaming import EventStreamResponse, sse
from mtai.errors import AppError, InvalidInput
from mtai.providers.llm.conversation import Generation
from mtai.services import model_capabilities
from mtai.services.chat import ChatTurn
from mtai.services.gateway import Outcome, RagOptions, cache_status

router = APIRouter(prefix="/api/v1/chat", tags=["chat"])


class ChatRequest(StrictModel):
    message: str = Field(min_length=1, description="The user's message.")
    conversation_id: uuid.UUID | None = Field(
        default=None, description="Continue this conversation."
    )
    model: str | None = Field(
        default=None, max_length=100, description="Default: the tenant's default."
    )
    use_rag: bool = Field(
        default=False, description="Answer from the tenant's documents, with citations."
    )
    collection_ids: list[uuid.UUID] | None = Field(
        default=None, max_length=100, description="Knowledge bases to use; default: all."
    )
    rag_top_k: Annotated[int, Field(ge=1, le=20)] | None = Field(
        default=None, description="Passages to retrieve (default MTAI_RAG_TOP_K)."
    )
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stop: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=4, description="Up to 4 sequences that end the answer."
    )
    seed: int | None = Field(default=None, description="For repeatable sampling, where honoured.")
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    stream: bool = False
    cache: bool = Field(
        default=False,
        description="Answer from the response cache if this exact request was answered before "
        "(the tenant must allow caching; streams are never cached).",
    )


class TokensUsed(ResponseModel):
    prompt: int
    completion: int
    total: int


class ChatResponse(ResponseModel):
    response: str
    conversation_id: uuid.UUID
    model_used: str
    tokens_used: TokensUsed
    latency_ms: int
    cost_usd: Decimal
    request_id: str
    finish_reason: str
    cached: bool = False
    citations: list[CitationOut] = Field(default_factory=list)


class ModelOut(ResponseModel):
    name: str
    provider: str
    context_window: int
    max_output_tokens: int
    input_price_per_1m: Decimal
    output_price_per_1m: Decimal
    is_default: bool = False
    # tools, vision, json_schema: what requests to this model may use (catalog and provider).
    capabilities: dict[str, bool] = Field(default_factory=dict)


class ConversationOut(ResponseModel):
    id: uuid.UUID
    title: str
    model: str
    created_at: datetime
    updated_at: datetime


class MessageOut(ResponseModel):
    role: str
    content: str
    tokens: int
    citations: list[CitationOut]
    created_at: datetime


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]


def _response(outcome: Outcome, turn: ChatTurn) -> ChatResponse:
    return ChatResponse(
        response=outcome.text,
        conversation_id=turn.conversation_id,
        model_used=outcome.model.name,
        tokens_used=TokensUsed(
            prompt=outcome.prompt_tokens,
            completion=outcome.completion_tokens,
            total=outcome.prompt_tokens + outcome.completion_tokens,
        ),
        latency_ms=outcome.latency_ms,
        cost_usd=outcome.cost_usd,
        request_id=outcome.request_id,
        finish_reason=outcome.finish_reason,
        cached=outcome.cached,
        citations=[CitationOut.model_validate(c) for c in turn.citations],
    )


@router.post(
    "/",
    response_model=ChatResponse,
    summary="Chat; with stream=true the answer comes as server-sent events",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat(
    body: ChatRequest, principal: PrincipalDep, runtime: RuntimeDep, response: Response
) -> Response | ChatResponse:
    if len(body.message) > runtime.settings.max_message_chars:
        raise InvalidInput(
            f"The message is {len(body.message)} characters; the limit is "
            f"{runtime.settings.max_message_chars}. Send a shorter message."
        )
    if not body.message.strip():
        raise InvalidInput("The message is empty.")
    turn = await runtime.chat.start(
        principal,
        message=body.message,
        conversation_id=body.conversation_id,
        model=body.model,
        max_tokens=body.max_tokens,
        generation=Generation(
            temperature=body.temperature,
            top_p=body.top_p,
            stop=tuple(body.stop or ()),
            seed=body.seed,
        ),
        use_cache=body.cache and not body.stream,
        rag=RagOptions(
            collection_ids=body.collection_ids,
            top_k=body.rag_top_k or runtime.settings.rag_top_k,
        )
        if body.use_rag
        else None,
    )
    is_new = body.conversation_id is None
    if not body.stream:
        outcome = await runtime.chat.complete(turn, body.message, is_new=is_new)
        if (cache := cache_status(turn.prepared, outcome)) is not None:
            response.headers["X-Mtai-Cache"] = cache
        return _response(outcome, turn)
    session = await runtime.chat.open_stream(turn)

    async def events() -> AsyncGenerator[str, None]:
        yield sse(
            {
                "conversation_id": str(turn.conversation_id),
                "model": session.model.name,
                "request_id": turn.prepared.request_id,
                "citations": [c.as_json() for c in turn.citations],
            },
            "start",
        )
        answer = runtime.chat.stream(turn, session, body.message, is_new=is_new)
        try:
            async for text in answer:
                yield sse({"text": text}, "delta")
        except AppError as exc:
            yield sse(
                {"detail": exc.detail, "code": exc.code, "request_id": turn.prepared.request_id},
                "error",
            )
            return
        finally:
            await answer.aclose()
        assert session.outcome is not None
        yield sse(_response(session.outcome, turn).model_dump(mode="json"), "done")

    return EventStreamResponse(events(), on_close=session.aclose)


@router.get("/models", response_model=list[ModelOut])
async def models(principal: PrincipalDep, runtime: RuntimeDep) -> list[ModelOut]:
    specs = await runtime.gateway.models_for(principal)
    default = await runtime.gateway.default_model_for(principal)
    return [
        ModelOut(
            name=s.name,
            provider=s.provider,
            context_window=s.context_window,
            max_output_tokens=s.max_output_tokens,
            input_price_per_1m=s.input_price_per_1m,
            output_price_per_1m=s.output_price_per_1m,
            is_default=s.name == default,
            capabilities=model_capabilities.effective(s),
        )
        for s in specs
    ]


@router.get("/conversations", response_model=Page[ConversationOut])
async def conversations(
    principal: PrincipalDep, runtime: RuntimeDep, paging: PagingDep
) -> Page[ConversationOut]:
    items, total = await runtime.chat.conversations(
        principal, limit=paging.limit, offset=paging.offset
    )
    return Page[ConversationOut].of(
        [ConversationOut.model_validate(c) for c in items], total, paging
    )


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail)
async def conversation(
    conversation_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> ConversationDetail:
    found, messages = await runtime.chat.get(principal, conversation_id)
    return ConversationDetail(
        **ConversationOut.model_validate(found).model_dump(),
        messages=[MessageOut.model_validate(m) for m in messages],
    )


@router.delete("/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_conversation(
    conversation_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> None:
    await runtime.chat.delete(principal, conversation_id)
