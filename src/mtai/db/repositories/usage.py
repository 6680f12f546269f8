from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import ApiKey, PromptLog, UsageDaily, UsageEvent

# One statement each, executed with the rows as parameters: SQLAlchemy caches it and sends the
# rows in batches (insertmanyvalues). `.values(rows)` built and compiled a new statement for
# every flush, on the event loop, a stall of tens of milliseconds under load.
_INSERT_EVENTS = (
    insert(UsageEvent)
    .on_conflict_do_nothing(index_elements=[UsageEvent.tenant_id, UsageEvent.request_id])
    .returning(UsageEvent.tenant_id, UsageEvent.request_id)
)
_DAILY = insert(UsageDaily)
_ADD_TO_DAILY = _DAILY.on_conflict_do_update(
    index_elements=[UsageDaily.tenant_id, UsageDaily.day, UsageDaily.model],
    set_={
        name: getattr(UsageDaily, name) + _DAILY.excluded[name]
        for name in (
            "requests",
            "errors",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "cached_read_tokens",
            "cached_write_tokens",
            "reasoning_tokens",
        )
    },
)


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert, skipping (tenant, request id) pairs already recorded; returns the rows inserted."""
    if not rows:
        return []
    result = await session.execute(_INSERT_EVENTS, rows)
    inserted = {(tenant_id, request_id) for tenant_id, request_id in result.all()}
    return [row for row in rows if (row["tenant_id"], row["request_id"]) in inserted]


async def add_to_daily(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_ADD_TO_DAILY, rows)


async def insert_prompt_logs(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(
            insert(PromptLog)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[PromptLog.tenant_id, PromptLog.request_id])
        )


async def purge_prompt_logs(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(
        delete(PromptLog).where(PromptLog.expires_at <= now).returning(PromptLog.request_id)
    )
    return len(result.all())


async def daily(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, since: date, until: date
) -> list[UsageDaily]:
    query = select(UsageDaily).where(UsageDaily.day >= since, UsageDaily.day <= until)
    if tenant_id is not None:
        query = query.where(UsageDaily.tenant_id == tenant_id)
    result = await session.execute(
        query.order_by(UsageDaily.day, UsageDaily.tenant_id, UsageDaily.model)
    )
    return list(result.scalars())


async def events_page(
    session: AsyncSession, *, tenant_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[UsageEvent], int]:
    rows = await session.execute(
        select(UsageEvent)
        .where(UsageEvent.tenant_id == tenant_id)
        .order_by(UsageEvent.created_at.desc())
        .limit(limit)
        .offset(offset)
    )
    total = await session.execute(
        select(func.count()).select_from(UsageEvent).where(UsageEvent.tenant_id == tenant_id)
    )
    return list(rows.scalars()), int(total.scalar_one())


async def prompt_logs_page(
    session: AsyncSession, *, tenant_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[PromptLog], int]:
    rows = await session.execute(
        select(PromptLog)
        .where(PromptLog.tenant_id == tenant_id)
        .order_by(PromptLog.created_at.desc())
        .limit(limit)
        .offset(offset)
    )
    total = await session.execute(
        select(func.count()).select_from(PromptLog).where(PromptLog.tenant_id == tenant_id)
    )
    return list(rows.scalars()), int(total.scalar_one())


async def month_spend(
    session: AsyncSession, *, tenant_id: uuid.UUID, api_key_id: uuid.UUID | None, since: datetime
) -> tuple[Decimal, int]:
    """(cost, tokens) recorded since the start of the month, for a tenant or one of its keys."""
    if api_key_id is None:
        query = select(
            func.coalesce(func.sum(UsageDaily.cost_usd), 0),
            func.coalesce(func.sum(UsageDaily.prompt_tokens + UsageDaily.completion_tokens), 0),
        ).where(UsageDaily.tenant_id == tenant_id, UsageDaily.day >= since.date())
    else:
        # A rotated key carries the month of the keys it replaced: follow `rotated_from`.
        chain = (
            select(ApiKey.id, ApiKey.rotated_from)
            .where(ApiKey.tenant_id == tenant_id, ApiKey.id == api_key_id)
            .cte("key_chain", recursive=True)
        )
        chain = chain.union(
            select(ApiKey.id, ApiKey.rotated_from).join(
                chain, (ApiKey.id == chain.c.rotated_from) & (ApiKey.tenant_id == tenant_id)
            )
        )
        query = select(
            func.coalesce(func.sum(UsageEvent.cost_usd), 0),
            func.coalesce(func.sum(UsageEvent.prompt_tokens + UsageEvent.completion_tokens), 0),
        ).where(
            UsageEvent.tenant_id == tenant_id,
            UsageEvent.api_key_id.in_(select(chain.c.id)),
            UsageEvent.created_at >= since,
        )
    cost, tokens = (await session.execute(query)).one()
    return Decimal(cost), int(tokens)
