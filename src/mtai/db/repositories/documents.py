"""Documents (rag_documents) and the lease that lets exactly one worker ingest each one.

A worker owns a document while `status = 'processing'` and its lease has not run out; every
write a worker makes names the attempt it claimed, so a worker that lost its lease (it was
presumed dead and another took over) can no longer change the row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import Document

UNFINISHED = ("queued", "processing")


def _lease(seconds: float) -> ColumnElement[datetime]:
    return func.now() + timedelta(seconds=seconds)


def _owned(document_id: uuid.UUID, attempt: int) -> ColumnElement[bool]:
    return and_(
        Document.id == document_id, Document.attempts == attempt, Document.status == "processing"
    )


async def get(session: AsyncSession, document_id: uuid.UUID) -> Document | None:
    return await session.get(Document, document_id)


async def by_content(
    session: AsyncSession, collection_id: uuid.UUID, sha256: str
) -> Document | None:
    result = await session.execute(
        select(Document).where(Document.collection_id == collection_id, Document.sha256 == sha256)
    )
    return result.scalar_one_or_none()


async def list_page(
    session: AsyncSession,
    *,
    limit: int,
    offset: int,
    collection_id: uuid.UUID | None,
    status: str | None,
) -> tuple[list[Document], int]:
    conditions: list[ColumnElement[bool]] = []
    if collection_id is not None:
        conditions.append(Document.collection_id == collection_id)
    if status is not None:
        conditions.append(Document.status == status)
    rows = await session.execute(
        select(Document)
        .where(*conditions)
        .order_by(Document.created_at.desc(), Document.id)
        .limit(limit)
        .offset(offset)
    )
    total = await session.execute(select(func.count()).select_from(Document).where(*conditions))
    return list(rows.scalars()), int(total.scalar_one())


async def in_collection(session: AsyncSession, collection_id: uuid.UUID) -> list[Document]:
    result = await session.execute(select(Document).where(Document.collection_id == collection_id))
    return list(result.scalars())


async def count(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Document))).scalar_one())


async def add(session: AsyncSession, document: Document) -> Document:
    session.add(document)
    await session.flush()
    await session.refresh(document)
    return document


async def remove(session: AsyncSession, document: Document) -> None:
    await session.delete(document)
    await session.flush()


async def claim(session: AsyncSession, document_id: uuid.UUID, lease_seconds: float) -> int | None:
    """Take the document for one attempt; its number, or None if it is not up for grabs."""
    result = await session.execute(
        update(Document)
        .where(
            Document.id == document_id,
            or_(
                Document.status == "queued",
                and_(Document.status == "processing", Document.lease_until < func.now()),
            ),
        )
        .values(
            status="processing",
            attempts=Document.attempts + 1,
            progress=0.0,
            lease_until=_lease(lease_seconds),
            updated_at=func.now(),
        )
        .returning(Document.attempts)
    )
    return result.scalar_one_or_none()


async def heartbeat(
    session: AsyncSession,
    document_id: uuid.UUID,
    attempt: int,
    *,
    progress: float,
    lease_seconds: float,
) -> bool:
    result = await session.execute(
        update(Document)
        .where(_owned(document_id, attempt))
        .values(progress=progress, lease_until=_lease(lease_seconds), updated_at=func.now())
        .returning(Document.id)
    )
    return result.scalar_one_or_none() is not None


async def finish(
    session: AsyncSession,
    document_id: uuid.UUID,
    attempt: int,
    *,
    kind: str,
    chunk_count: int,
    token_count: int,
    embedding_model: str,
) -> bool:
    result = await session.execute(
        update(Document)
        .where(_owned(document_id, attempt))
        .values(
            status="ready",
            progress=1.0,
            error=None,
            kind=kind,
            chunk_count=chunk_count,
            token_count=token_count,
            embedding_model=embedding_model,
            processed_at=func.now(),
            updated_at=func.now(),
        )
        .returning(Document.id)
    )
    return result.scalar_one_or_none() is not None


async def fail(
    session: AsyncSession, document_id: uuid.UUID, attempt: int, *, error: str, kind: str | None
) -> bool:
    result = await session.execute(
        update(Document)
        .where(_owned(document_id, attempt))
        .values(
            status="failed", error=error, kind=kind, processed_at=func.now(), updated_at=func.now()
        )
        .returning(Document.id)
    )
    return result.scalar_one_or_none() is not None


async def retry_later(
    session: AsyncSession, document_id: uuid.UUID, attempt: int, *, error: str, delay: float
) -> bool:
    """Back to the queue; the reaper sends it again once `delay` has passed."""
    result = await session.execute(
        update(Document)
        .where(_owned(document_id, attempt))
        .values(status="queued", error=error, lease_until=_lease(delay), updated_at=func.now())
        .returning(Document.id)
    )
    return result.scalar_one_or_none() is not None


@dataclass(frozen=True)
class Stale:
    tenant_id: uuid.UUID
    document_id: uuid.UUID
    attempts: int


async def stale(session: AsyncSession, *, limit: int) -> list[Stale]:
    """Unfinished documents whose lease ran out: lost messages, dead workers, due retries."""
    result = await session.execute(
        select(Document.tenant_id, Document.id, Document.attempts)
        .where(Document.status.in_(UNFINISHED), Document.lease_until < func.now())
        .order_by(Document.lease_until)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Stale(t, d, a) for t, d, a in result.all()]


async def resend(session: AsyncSession, ids: Sequence[uuid.UUID], seconds: float) -> None:
    """Back to 'queued' for the message about to be sent; a worker still holding one of them
    (presumed dead) finds its attempt void at its next heartbeat."""
    if ids:
        await session.execute(
            update(Document)
            .where(Document.id.in_(ids))
            .values(status="queued", lease_until=_lease(seconds), updated_at=func.now())
        )


async def give_up(session: AsyncSession, document_id: uuid.UUID, error: str) -> None:
    await session.execute(
        update(Document)
        .where(Document.id == document_id, Document.status.in_(UNFINISHED))
        .values(status="failed", error=error, processed_at=func.now(), updated_at=func.now())
    )


async def requeue_collection(session: AsyncSession, collection_id: uuid.UUID) -> list[uuid.UUID]:
    """Every document of a collection back to the queue (after its embedding model changed)."""
    result = await session.execute(
        update(Document)
        .where(Document.collection_id == collection_id)
        .values(
            status="queued",
            attempts=0,
            progress=0.0,
            error=None,
            lease_until=func.now(),
            updated_at=func.now(),
        )
        .returning(Document.id)
    )
    return list(result.scalars())


@dataclass(frozen=True)
class StatusCount:
    status: str
    documents: int
    bytes: int
    chunks: int
    tokens: int


async def totals_by_status(session: AsyncSession) -> list[StatusCount]:
    result = await session.execute(
        select(
            Document.status,
            func.count(),
            func.coalesce(func.sum(Document.size_bytes), 0),
            func.coalesce(func.sum(Document.chunk_count), 0),
            func.coalesce(func.sum(Document.token_count), 0),
        ).group_by(Document.status)
    )
    return [StatusCount(s, int(n), int(b), int(c), int(t)) for s, n, b, c, t in result.all()]
