"""Anthropic's Messages API: the `anthropic` SDK (and any tool honouring ANTHROPIC_BASE_URL)
works with base_url at mtai and an mtai API key, sent as `x-api-key` or as a Bearer token.

Errors on these routes take Anthropic's shape ({"type": "error", "error": {...}}); see
api/errors.py. Translation lives in api/anthropic_messages.py.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, Response

from mtai.api import anthropic_messages as am
from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.openai_chat import dropped_header
from mtai.api.streaming import EventStreamResponse, relay
from mtai.errors import InvalidInput
from mtai.services import tokenizer
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


@router.post("", response_model=None)
async def create_message(
    body: am.MessagesRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    translated = am.translate(body, runtime.settings)
    gateway = runtime.gateway
    prepared = await gateway.prepare(principal, translated.chat, api="anthropic")
    # `request-id` is where Anthropic's SDK finds it.
    headers = {
        "request-id": prepared.request_id,
        **dropped_header(gateway.dropped_header(prepared), translated.dropped),
    }
    if not body.stream:
        outcome = await gateway.complete(prepared)
        return JSONResponse(am.message_json(outcome), headers=headers)
    session = await gateway.open_stream(prepared)
    stream = am.MessageStream(
        am.message_id(prepared.request_id),
        session.model.name,
        tokenizer.count_messages(prepared.messages) + tokenizer.count_settings(prepared.generation),
    )
    lines = relay(
        session,
        opening=stream.start(),
        on_event=stream.on,
        on_error=lambda exc: [stream.error(exc)],
        closing=stream.finish,
    )
    return EventStreamResponse(lines, headers=headers, on_close=session.aclose)


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
