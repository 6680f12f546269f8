from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import AuditEvent


async def append(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    actor_type: str,
    actor_id: str | None,
    action: str,
    target_type: str | None,
    target_id: str | None,
    details: dict[str, Any],
    request_id: str | None,
) -> None:
    session.add(
        AuditEvent(
            tenant_id=tenant_id,
            actor_type=actor_type,
            actor_id=actor_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=details,
            request_id=request_id,
        )
    )
    await session.flush()


async def list_page(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    action: str | None,
    limit: int,
    offset: int,
) -> tuple[list[AuditEvent], int]:
    """Newest first; `tenant_id=None` means every event the session may see."""
    query = select(AuditEvent)
    count = select(func.count()).select_from(AuditEvent)
    if tenant_id is not None:
        query = query.where(AuditEvent.tenant_id == tenant_id)
        count = count.where(AuditEvent.tenant_id == tenant_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
        count = count.where(AuditEvent.action == action)
    rows = await session.execute(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset))
    return list(rows.scalars()), int((await session.execute(count)).scalar_one())
