"""Stored responses (OpenAI Responses API): one row per turn, a conversation is a chain of
`previous_id` links. Every query names the owner; row-level security adds the tenant."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import StoredResponse


async def add(session: AsyncSession, row: StoredResponse) -> None:
    session.add(row)
    await session.flush()


async def get_owned(
    session: AsyncSession, response_id: uuid.UUID, owner: str
) -> StoredResponse | None:
    result = await session.execute(
        select(StoredResponse).where(
            StoredResponse.id == response_id, StoredResponse.owner == owner
        )
    )
    return result.scalar_one_or_none()


async def chain(
    session: AsyncSession, response_id: uuid.UUID, owner: str, *, limit: int
) -> list[StoredResponse]:
    """The response and the ones it continues, newest first, at most `limit` of them; the
    walk stops early where a link is missing (deleted) or is not the owner's."""
    links = (
        select(
            StoredResponse.id,
            StoredResponse.previous_id,
            literal(1).label("depth"),
        )
        .where(StoredResponse.id == response_id, StoredResponse.owner == owner)
        .cte("links", recursive=True)
    )
    earlier = select(
        StoredResponse.id, StoredResponse.previous_id, (links.c.depth + 1).label("depth")
    ).where(
        StoredResponse.id == links.c.previous_id,
        StoredResponse.owner == owner,
        links.c.depth < limit,
    )
    links = links.union_all(earlier)
    result = await session.execute(
        select(StoredResponse).join(links, links.c.id == StoredResponse.id).order_by(links.c.depth)
    )
    return list(result.scalars())


async def delete_owned(session: AsyncSession, response_id: uuid.UUID, owner: str) -> bool:
    result = await session.execute(
        delete(StoredResponse)
        .where(StoredResponse.id == response_id, StoredResponse.owner == owner)
        .returning(StoredResponse.id)
    )
    return result.scalar_one_or_none() is not None
