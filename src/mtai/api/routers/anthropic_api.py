"""Anthropic's Messages API: the `anthropic` SDK (and any tool honouring ANTHROPIC_BASE_URL)
works with base_url at mtai and an mtai API key, sent as `x-api-key` or as a Bearer token.

Errors on these routes take Anthropic's shape ({"type": "error", "error": {...}}); see
api/errors.py. Translation lives in api/anthropic_messages.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, Response

from mtai.api import anthropic_messages as am
from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.streaming import EventStreamResponse
from mtai.errors import AppError, InvalidInput
from mtai.services import tokenizer
from mtai.services.gateway import DROPPED_HEADER
from mtai.services.principal import Scope

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _anthropic_version(
    anthropic_version: Annotated[str | None, Header(max_length=64)] = None,
) -> None:
    """Anthropic requires `anthropic-version`; its SDK and Claude Code always send it. mtai
    accepts it missing (every version gets the same API) but refuses one that is not a date,
    which no Anthropic client sends. `anthropic-beta` is not checked: a beta only unlocks
    request fields, and each field is checked on its own."""
    if anthropic_version is not None and not _VERSION.match(anthropic_version.strip()):
        raise InvalidInput(
            f"anthropic-version {anthropic_version!r} is not a version; send e.g. 2023-06-01."
        )


router = APIRouter(
    prefix="/v1/messages",
    tags=["anthropic-compatible"],
    dependencies=[Depends(_anthropic_version)],
)


def _headers(request_id: str, *dropped: str) -> dict[str, str]:
    """`request-id` (where Anthropic's SDK finds it) and the dropped-params header naming what
    the gateway dropped and what this API accepted without forwarding."""
    names = [name for name in dict.fromkeys(dropped) if name]
    return {"request-id": request_id, **({DROPPED_HEADER: ", ".join(names)} if names else {})}


@router.post("", response_model=None)
async def create_message(
    body: am.MessagesRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    translated = am.translate(body, runtime.settings)
    gateway = runtime.gateway
    prepared = await gateway.prepare(principal, translated.chat, api="anthropic")
    by_gateway = gateway.dropped_header(prepared).get(DROPPED_HEADER, "").split(", ")
    headers = _headers(prepared.request_id, *translated.dropped, *by_gateway)
    if not body.stream:
        outcome = await gateway.complete(prepared)
        return JSONResponse(am.message_json(outcome), headers=headers)
    session = await gateway.open_stream(prepared)
    stream = am.MessageStream(
        am.message_id(prepared.request_id),
        session.model.name,
        tokenizer.count_messages(prepared.messages) + tokenizer.count_settings(prepared.generation),
    )

    async def events() -> AsyncGenerator[str, None]:
        for line in stream.start():
            yield line
        source = session.events()
        try:
            async for event in source:
                for line in stream.on(event):
                    yield line
        except AppError as exc:
            yield stream.error(exc)
            return
        finally:
            await source.aclose()
        assert session.outcome is not None
        for line in stream.finish(session.outcome):
            yield line

    return EventStreamResponse(events(), headers=headers, on_close=session.aclose)


@router.post("/count_tokens")
async def count_tokens(
    body: am.CountTokensRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """mtai's own count (cl100k, the same the gateway budgets with), not the upstream's: no
    upstream call is made. The model must be one the tenant may use."""
    principal.require_scope(Scope.CHAT)
    translated = am.translate(body, runtime.settings)
    settings = await runtime.auth.tenant_settings(principal.require_tenant())
    await runtime.catalog.resolve(settings, body.model)
    chat = translated.chat
    return {
        "input_tokens": tokenizer.count_messages(chat.messages)
        + tokenizer.count_settings(chat.generation)
    }
