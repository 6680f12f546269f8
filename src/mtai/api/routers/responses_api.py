"""The OpenAI Responses API: `client.responses.create / retrieve / delete` of the official SDK
work with base_url=.../v1 and an mtai key. Translation lives in api/openai_responses.py, stored
conversations in services/responses.py; errors take OpenAI's shape (api/errors.py)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import Response

from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.openai_chat import dropped_header
from mtai.api.openai_responses import (
    EventStream,
    ResponseHead,
    ResponsesRequest,
    output_items,
    output_messages,
    status_of,
    translate,
)
from mtai.api.streaming import EventStreamResponse, relay
from mtai.providers.llm.conversation import Message
from mtai.runtime import Runtime
from mtai.services.gateway import Gateway, Outcome
from mtai.services.responses import ResponsesService, public_id

router = APIRouter(prefix="/v1", tags=["openai-compatible"])


def _service(runtime: Runtime) -> ResponsesService:
    return ResponsesService(
        runtime.db, max_conversation_bytes=runtime.settings.conversation_byte_limit
    )


@router.post("/responses", response_model=None)
async def create_response(
    body: ResponsesRequest, principal: PrincipalDep, runtime: RuntimeDep, response: Response
) -> Response | dict[str, Any]:
    service = _service(runtime)
    previous_id: uuid.UUID | None = None
    history: list[Message] = []
    if body.previous_response_id is not None:
        previous_id, history = await service.history(principal, body.previous_response_id)
    translated = translate(body, history, runtime.settings)
    prepared = await runtime.gateway.prepare(principal, translated.chat, api="responses")
    headers = dropped_header(Gateway.dropped_header(prepared), translated.dropped)
    response_id = uuid.uuid4()
    created = int(time.time())
    store = body.store is not False
    # Logprobs are shown only when asked for and not dropped for a model that has none.
    logprobs = translated.logprobs and "logprobs" not in prepared.dropped

    async def save(outcome: Outcome, result: dict[str, Any]) -> None:
        if store:
            await service.save(
                principal,
                response_id=response_id,
                previous_id=previous_id,
                model=outcome.model.name,
                turn_input=translated.turn_input,
                output=output_messages(outcome),
                body=result,
            )

    if not body.stream:
        outcome = await runtime.gateway.complete(prepared)
        head = ResponseHead(public_id(response_id), created, outcome.model.name, translated.echo)
        status, incomplete = status_of(outcome.finish_reason)
        result = head.body(
            status,
            output_items(outcome, logprobs=logprobs),
            usage=outcome.usage,
            incomplete=incomplete,
            completed_at=int(time.time()),
        )
        await save(outcome, result)
        response.headers.update(headers)
        return result

    session = await runtime.gateway.open_stream(prepared)
    head = ResponseHead(public_id(response_id), created, session.model.name, translated.echo)
    stream = EventStream(head, logprobs=logprobs)

    async def closing(outcome: Outcome) -> list[str]:
        result, events = stream.finish(outcome)
        # Stored before response.completed is sent: a client may continue the conversation
        # as soon as it has that event. Shielded: a client leaving now does not undo it.
        with anyio.CancelScope(shield=True):
            await save(outcome, result)
        return events

    lines = relay(
        session, opening=stream.start(), on_event=stream.on, on_error=stream.error, closing=closing
    )
    return EventStreamResponse(lines, headers=headers, on_close=session.aclose)


@router.get("/responses/{response_id}")
async def get_response(
    response_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> dict[str, Any]:
    return await _service(runtime).get(principal, response_id)


@router.delete("/responses/{response_id}")
async def delete_response(
    response_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> dict[str, Any]:
    await _service(runtime).delete(principal, response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}
