"""Stored responses (OpenAI Responses API): one row per turn, a conversation is a chain of
`previous_id` links. Every query names the owner; row-level security adds the tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Text, case, cast, delete, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

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


@dataclass(frozen=True)
class Turn:
    """One link of a chain: what continuing it needs, not the stored response object."""

    previous_id: uuid.UUID | None
    size: int  # bytes of the JSON text of this turn's input and output and of every later turn's
    input: list[dict[str, Any]] | None  # None (with output) on the turn that passed max_bytes
    output: list[dict[str, Any]] | None


def _turn_size() -> ColumnElement[int]:
    """A row's input and output as JSON text, in bytes: what loading it costs, which the
    stored (compressed) size can understate a thousandfold. bigint: a running sum of many
    turns may pass what an integer holds."""
    as_text = func.octet_length(cast(StoredResponse.input, Text)) + func.octet_length(
        cast(StoredResponse.output, Text)
    )
    return cast(as_text, BigInteger)


async def chain(
    session: AsyncSession, response_id: uuid.UUID, owner: str, *, limit: int, max_bytes: int
) -> list[Turn]:
    """The response and the ones it continues, newest first, at most `limit` of them. The walk
    stops early where a link is missing (deleted) or is not the owner's, and after the first
    turn whose running size passes `max_bytes`; that turn's messages are not loaded."""
    links = (
        select(
            StoredResponse.id,
            StoredResponse.previous_id,
            literal(1).label("depth"),
            _turn_size().label("size"),
        )
        .where(StoredResponse.id == response_id, StoredResponse.owner == owner)
        .cte("links", recursive=True)
    )
    earlier = select(
        StoredResponse.id,
        StoredResponse.previous_id,
        (links.c.depth + 1).label("depth"),
        (links.c.size + _turn_size()).label("size"),
    ).where(
        StoredResponse.id == links.c.previous_id,
        StoredResponse.owner == owner,
        links.c.depth < limit,
        links.c.size <= max_bytes,
    )
    links = links.union_all(earlier)
    within = links.c.size <= max_bytes
    result = await session.execute(
        select(
            links.c.previous_id,
            links.c.size,
            case((within, StoredResponse.input)),
            case((within, StoredResponse.output)),
        )
        .select_from(StoredResponse)
        .join(links, links.c.id == StoredResponse.id)
        .order_by(links.c.depth)
    )
    return [Turn(*row) for row in result]


async def delete_owned(session: AsyncSession, response_id: uuid.UUID, owner: str) -> bool:
    result = await session.execute(
        delete(StoredResponse)
        .where(StoredResponse.id == response_id, StoredResponse.owner == owner)
        .returning(StoredResponse.id)
    )
    return result.scalar_one_or_none() is not None


async def purge_older_than(session: AsyncSession, cutoff: datetime) -> int:
    """Delete every tenant's responses made before `cutoff` (a platform session's work)."""
    result = await session.execute(
        delete(StoredResponse)
        .where(StoredResponse.created_at < cutoff)
        .returning(StoredResponse.id)
    )
    return len(result.all())
