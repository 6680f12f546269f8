"""Stored responses of the OpenAI Responses API: the conversations `previous_response_id`
continues.

A stored response belongs to the user or API key that made it, as a native conversation does
(`chat.owner_of`); nobody else in the tenant can read, continue or delete it, and row-level
security keeps every other tenant out. Each row holds its own turn (the input it was given,
`instructions` excepted as OpenAI does, and the answer) as canonical messages; a conversation
is the chain of turns, read oldest first. Rows are written once the answer exists, so a failed
call stores nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from mtai.db.engine import Database
from mtai.db.models import StoredResponse
from mtai.db.repositories import responses as responses_repo
from mtai.errors import InvalidInput, NotFound
from mtai.providers.llm.conversation import (
    ImagePart,
    Message,
    Part,
    Role,
    TextPart,
    ToolCall,
    ToolResult,
)
from mtai.services.chat import owner_of
from mtai.services.principal import Principal, Scope

ID_PREFIX = "resp_"
# The longest conversation continued through previous_response_id, in responses: each turn
# is a row read per request, and the gateway trims what exceeds a model's window anyway.
MAX_CHAIN = 500
_ROLES: frozenset[str] = frozenset({"system", "user", "assistant", "tool"})


def public_id(response_id: uuid.UUID) -> str:
    return f"{ID_PREFIX}{response_id.hex}"


def parse_id(text: str) -> uuid.UUID | None:
    """The row id of a `resp_...` id; None for anything that is not one of ours."""
    if not text.startswith(ID_PREFIX) or len(text) != len(ID_PREFIX) + 32:
        return None
    try:
        return uuid.UUID(hex=text.removeprefix(ID_PREFIX))
    except ValueError:
        return None


def _not_found(text: str, code: str = "response_not_found") -> NotFound:
    shown = text if len(text) <= 64 else text[:64] + "..."
    return NotFound(f"Response with id '{shown}' not found.", code=code)


# -- canonical messages as JSON ------------------------------------------------------------


def _part_json(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "image", "url": part.url, "detail": part.detail}
    if isinstance(part, ToolCall):
        return {"type": "tool_call", "id": part.id, "name": part.name, "arguments": part.arguments}
    return {
        "type": "tool_result",
        "call_id": part.call_id,
        "content": [_part_json(p) for p in part.content],
        "is_error": part.is_error,
    }


def _part(data: dict[str, Any]) -> Part:
    kind = data["type"]
    if kind == "text":
        return TextPart(str(data["text"]))
    if kind == "image":
        return ImagePart(str(data["url"]), data.get("detail"))
    if kind == "tool_call":
        return ToolCall(str(data["id"]), str(data["name"]), str(data["arguments"]))
    if kind == "tool_result":
        content = [_part(p) for p in data["content"]]
        return ToolResult(
            str(data["call_id"]),
            tuple(p for p in content if isinstance(p, TextPart | ImagePart)),
            bool(data.get("is_error", False)),
        )
    raise ValueError(f"unknown stored part {kind!r}")


def message_json(message: Message) -> dict[str, Any]:
    return {"role": message.role, "parts": [_part_json(p) for p in message.parts]}


def message_from_json(data: dict[str, Any]) -> Message:
    role = data["role"]
    if role not in _ROLES:
        raise ValueError(f"unknown stored role {role!r}")
    role_: Role = role
    return Message(role_, [_part(p) for p in data["parts"]])


class ResponsesService:
    def __init__(self, db: Database, *, max_conversation_bytes: int) -> None:
        self.db = db
        self.max_conversation_bytes = max_conversation_bytes

    async def history(self, principal: Principal, previous: str) -> tuple[uuid.UUID, list[Message]]:
        """The conversation `previous` ends (its row id, and every turn's messages oldest
        first); 404 unless it is the caller's own stored response, 400 if it is longer than
        `max_conversation_bytes` (the walk stops there: a chain of turns holding a whole
        request each must not be loaded into memory)."""
        principal.require_scope(Scope.CHAT)
        response_id = parse_id(previous)
        if response_id is None:
            raise _not_found(previous, "previous_response_not_found")
        async with self.db.tenant(principal.require_tenant()) as session:
            turns = await responses_repo.chain(
                session,
                response_id,
                owner_of(principal),
                limit=MAX_CHAIN,
                max_bytes=self.max_conversation_bytes,
            )
        if not turns:
            raise _not_found(previous, "previous_response_not_found")
        oldest = turns[-1]
        if oldest.size > self.max_conversation_bytes:
            raise InvalidInput(
                f"The conversation of '{public_id(response_id)}' is too large to continue (over "
                f"{self.max_conversation_bytes} bytes stored); start a new one without "
                "previous_response_id (send the history you need as input items).",
                code="conversation_too_large",
            )
        if oldest.previous_id is not None:
            if len(turns) >= MAX_CHAIN:
                raise InvalidInput(
                    f"The conversation of '{public_id(response_id)}' is longer than {MAX_CHAIN} "
                    "responses; start a new one (send the history you need as input items)."
                )
            raise NotFound(
                f"Response '{public_id(oldest.previous_id)}', which "
                f"'{public_id(response_id)}' continues, was deleted: that conversation can no "
                "longer be continued.",
                code="previous_response_not_found",
            )
        messages = [
            message_from_json(m)
            for turn in reversed(turns)
            for m in (*(turn.input or ()), *(turn.output or ()))
        ]
        return response_id, messages

    async def save(
        self,
        principal: Principal,
        *,
        response_id: uuid.UUID,
        previous_id: uuid.UUID | None,
        model: str,
        turn_input: Sequence[Message],
        output: Sequence[Message],
        body: dict[str, Any],
    ) -> None:
        tenant_id = principal.require_tenant()
        async with self.db.tenant(tenant_id) as session:
            await responses_repo.add(
                session,
                StoredResponse(
                    id=response_id,
                    tenant_id=tenant_id,
                    owner=owner_of(principal),
                    previous_id=previous_id,
                    model=model,
                    input=[message_json(m) for m in turn_input],
                    output=[message_json(m) for m in output],
                    body=body,
                ),
            )

    async def get(self, principal: Principal, text: str) -> dict[str, Any]:
        principal.require_scope(Scope.CHAT)
        response_id = parse_id(text)
        if response_id is not None:
            async with self.db.tenant(principal.require_tenant()) as session:
                row = await responses_repo.get_owned(session, response_id, owner_of(principal))
            if row is not None:
                return dict(row.body)
        raise _not_found(text)

    async def delete(self, principal: Principal, text: str) -> None:
        principal.require_scope(Scope.CHAT)
        response_id = parse_id(text)
        if response_id is not None:
            async with self.db.tenant(principal.require_tenant()) as session:
                if await responses_repo.delete_owned(session, response_id, owner_of(principal)):
                    return
        raise _not_found(text)
