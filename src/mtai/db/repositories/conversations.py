from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import ChatMessage, Conversation


async def create(
    session: AsyncSession, *, tenant_id: uuid.UUID, owner: str, title: str, model: str
) -> Conversation:
    conversation = Conversation(
        id=uuid.uuid4(), tenant_id=tenant_id, owner=owner, title=title, model=model
    )
    session.add(conversation)
    await session.flush()
    await session.refresh(conversation)
    return conversation


async def get_owned(
    session: AsyncSession, conversation_id: uuid.UUID, owner: str
) -> Conversation | None:
    result = await session.execute(
        select(Conversation).where(Conversation.id == conversation_id, Conversation.owner == owner)
    )
    return result.scalar_one_or_none()


async def list_owned(
    session: AsyncSession, owner: str, *, limit: int, offset: int
) -> tuple[list[Conversation], int]:
    rows = await session.execute(
        select(Conversation)
        .where(Conversation.owner == owner)
        .order_by(Conversation.updated_at.desc(), Conversation.id)
        .limit(limit)
        .offset(offset)
    )
    total = await session.execute(
        select(func.count()).select_from(Conversation).where(Conversation.owner == owner)
    )
    return list(rows.scalars()), int(total.scalar_one())


async def messages(session: AsyncSession, conversation_id: uuid.UUID) -> list[ChatMessage]:
    result = await session.execute(
        select(ChatMessage)
        .where(ChatMessage.conversation_id == conversation_id)
        .order_by(ChatMessage.id)
    )
    return list(result.scalars())


async def append(
    session: AsyncSession,
    conversation: Conversation,
    *,
    role: str,
    content: str,
    tokens: int,
    request_id: str | None,
    when: datetime,
    citations: list[dict[str, Any]],
) -> None:
    session.add(
        ChatMessage(
            conversation_id=conversation.id,
            tenant_id=conversation.tenant_id,
            role=role,
            content=content,
            tokens=tokens,
            request_id=request_id,
            citations=citations,
        )
    )
    await session.execute(
        update(Conversation).where(Conversation.id == conversation.id).values(updated_at=when)
    )
    await session.flush()


async def delete_owned(session: AsyncSession, conversation_id: uuid.UUID, owner: str) -> bool:
    result = await session.execute(
        delete(Conversation)
        .where(Conversation.id == conversation_id, Conversation.owner == owner)
        .returning(Conversation.id)
    )
    return result.scalar_one_or_none() is not None
