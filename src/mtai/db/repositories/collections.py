"""Knowledge bases (rag_collections)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import Collection


async def get(session: AsyncSession, collection_id: uuid.UUID) -> Collection | None:
    return await session.get(Collection, collection_id)


async def by_name(session: AsyncSession, name: str) -> Collection | None:
    result = await session.execute(
        select(Collection).where(func.lower(Collection.name) == name.lower())
    )
    return result.scalar_one_or_none()


async def list_page(
    session: AsyncSession, *, limit: int, offset: int
) -> tuple[list[Collection], int]:
    rows = await session.execute(
        select(Collection)
        .order_by(Collection.created_at, Collection.id)
        .limit(limit)
        .offset(offset)
    )
    total = await session.execute(select(func.count()).select_from(Collection))
    return list(rows.scalars()), int(total.scalar_one())


async def many(session: AsyncSession, ids: list[uuid.UUID] | None) -> list[Collection]:
    """The tenant's collections with these ids (all of them when ids is None)."""
    query = select(Collection).order_by(Collection.created_at, Collection.id)
    if ids is not None:
        query = query.where(Collection.id.in_(ids))
    return list((await session.execute(query)).scalars())


async def count(session: AsyncSession) -> int:
    result = await session.execute(select(func.count()).select_from(Collection))
    return int(result.scalar_one())


async def add(session: AsyncSession, collection: Collection) -> Collection:
    session.add(collection)
    await session.flush()
    await session.refresh(collection)
    return collection


async def save(session: AsyncSession, collection: Collection) -> Collection:
    await session.flush()
    await session.refresh(collection)
    return collection


async def remove(session: AsyncSession, collection: Collection) -> None:
    await session.delete(collection)
    await session.flush()
