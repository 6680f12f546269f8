"""Native chat: persistent conversations on top of the gateway.

A conversation belongs to the user or API key that started it; nobody else in the tenant sees
it. Its messages are written once the answer exists (both turns in one transaction), so a
failed call leaves no half-written turn behind.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import anyio

from mtai.db.engine import Database
from mtai.db.models import ChatMessage, Conversation
from mtai.db.repositories import conversations as conversations_repo
from mtai.errors import NotFound
from mtai.providers.llm.base import Message, Role
from mtai.providers.llm.conversation import Delta, Generation
from mtai.services import tokenizer
from mtai.services.gateway import (
    ChatInput,
    Gateway,
    Outcome,
    Prepared,
    RagOptions,
    StreamSession,
)
from mtai.services.principal import Principal
from mtai.services.retrieval import Citation

TITLE_CHARS = 60


def owner_of(principal: Principal) -> str:
    actor_type, actor_id = principal.actor
    return f"{actor_type}:{actor_id}"


@dataclass(frozen=True)
class ChatTurn:
    conversation_id: uuid.UUID
    prepared: Prepared

    @property
    def citations(self) -> list[Citation]:
        return self.prepared.citations


class ChatService:
    def __init__(self, db: Database, gateway: Gateway) -> None:
        self.db = db
        self.gateway = gateway

    async def _history(self, principal: Principal, conversation_id: uuid.UUID) -> list[Message]:
        tenant_id = principal.require_tenant()
        async with self.db.tenant(tenant_id) as session:
            conversation = await conversations_repo.get_owned(
                session, conversation_id, owner_of(principal)
            )
            if conversation is None:
                raise NotFound("Conversation not found.", code="conversation_not_found")
            rows = await conversations_repo.messages(session, conversation_id)
        return [Message(cast(Role, row.role), row.content) for row in rows]

    async def start(
        self,
        principal: Principal,
        *,
        message: str,
        conversation_id: uuid.UUID | None,
        model: str | None,
        max_tokens: int | None,
        generation: Generation,
        use_cache: bool = False,
        rag: RagOptions | None = None,
    ) -> ChatTurn:
        history = await self._history(principal, conversation_id) if conversation_id else []
        chat = ChatInput(
            messages=[*history, Message("user", message)],
            model=model,
            max_tokens=max_tokens,
            generation=generation,
            use_cache=use_cache,
            rag=rag,
        )
        prepared = await self.gateway.prepare(principal, chat, api="native")
        return ChatTurn(conversation_id or uuid.uuid4(), prepared)

    async def _save(self, turn: ChatTurn, question: str, outcome: Outcome, *, is_new: bool) -> None:
        principal = turn.prepared.principal
        tenant_id = principal.require_tenant()
        now = datetime.now(UTC)
        async with self.db.tenant(tenant_id) as session:
            if is_new:
                conversation = Conversation(
                    id=turn.conversation_id,
                    tenant_id=tenant_id,
                    owner=owner_of(principal),
                    title=" ".join(question.split())[:TITLE_CHARS] or "New conversation",
                    model=outcome.model.name,
                )
                session.add(conversation)
                await session.flush()
            else:
                found = await conversations_repo.get_owned(
                    session, turn.conversation_id, owner_of(principal)
                )
                if found is None:  # deleted while the answer was being written
                    return
                conversation = found
            cited = [c.as_json() for c in turn.citations]
            for role, content, citations in (
                ("user", question, []),
                ("assistant", outcome.text, cited),
            ):
                await conversations_repo.append(
                    session,
                    conversation,
                    role=role,
                    content=content,
                    tokens=tokenizer.count(content),
                    request_id=outcome.request_id,
                    when=now,
                    citations=citations,
                )

    async def complete(self, turn: ChatTurn, question: str, *, is_new: bool) -> Outcome:
        outcome = await self.gateway.complete(turn.prepared)
        await self._save(turn, question, outcome, is_new=is_new)
        return outcome

    async def open_stream(self, turn: ChatTurn) -> StreamSession:
        return await self.gateway.open_stream(turn.prepared)

    async def stream(
        self, turn: ChatTurn, session: StreamSession, question: str, *, is_new: bool
    ) -> AsyncGenerator[str, None]:
        """The answer's text as it comes; the turn is saved however the stream ends."""
        events = session.events()
        try:
            async for event in events:
                if isinstance(event, Delta):
                    yield event.text
        finally:
            with anyio.CancelScope(shield=True):
                await events.aclose()
                if session.outcome is not None and session.outcome.text:
                    await self._save(turn, question, session.outcome, is_new=is_new)

    async def conversations(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[list[Conversation], int]:
        async with self.db.tenant(principal.require_tenant()) as session:
            return await conversations_repo.list_owned(
                session, owner_of(principal), limit=limit, offset=offset
            )

    async def get(
        self, principal: Principal, conversation_id: uuid.UUID
    ) -> tuple[Conversation, list[ChatMessage]]:
        async with self.db.tenant(principal.require_tenant()) as session:
            conversation = await conversations_repo.get_owned(
                session, conversation_id, owner_of(principal)
            )
            if conversation is None:
                raise NotFound("Conversation not found.", code="conversation_not_found")
            return conversation, await conversations_repo.messages(session, conversation_id)

    async def delete(self, principal: Principal, conversation_id: uuid.UUID) -> None:
        async with self.db.tenant(principal.require_tenant()) as session:
            if not await conversations_repo.delete_owned(
                session, conversation_id, owner_of(principal)
            ):
                raise NotFound("Conversation not found.", code="conversation_not_found")
