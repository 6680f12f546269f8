from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import ApiKey


async def create(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    name: str,
    prefix: str,
    key_hash: bytes,
    scopes: list[str],
    expires_at: datetime | None,
    created_by: uuid.UUID | None,
    rotated_from: uuid.UUID | None = None,
) -> ApiKey:
    key = ApiKey(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        name=name,
        prefix=prefix,
        key_hash=key_hash,
        scopes=scopes,
        expires_at=expires_at,
        created_by=created_by,
        rotated_from=rotated_from,
    )
    session.add(key)
    await session.flush()
    await session.refresh(key)
    return key


async def get(session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def get_by_prefix(session: AsyncSession, prefix: str) -> ApiKey | None:
    result = await session.execute(select(ApiKey).where(ApiKey.prefix == prefix))
    return result.scalar_one_or_none()


async def list_page(
    session: AsyncSession, tenant_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[ApiKey], int]:
    result = await session.execute(
        select(ApiKey)
        .where(ApiKey.tenant_id == tenant_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
        .limit(limit)
        .offset(offset)
    )
    total = await session.execute(
        select(func.count()).select_from(ApiKey).where(ApiKey.tenant_id == tenant_id)
    )
    return list(result.scalars()), int(total.scalar_one())


async def set_revoked(session: AsyncSession, key: ApiKey, when: datetime) -> ApiKey:
    key.revoked_at = when
    await session.flush()
    return key


async def active_created_by(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> list[ApiKey]:
    """The tenant's keys this user created that are not revoked yet."""
    result = await session.execute(
        select(ApiKey).where(
            ApiKey.tenant_id == tenant_id,
            ApiKey.created_by == user_id,
            ApiKey.revoked_at.is_(None),
        )
    )
    return list(result.scalars())


async def set_limits(session: AsyncSession, key: ApiKey, limits: dict[str, Any]) -> ApiKey:
    key.limits = limits
    await session.flush()
    return key


async def set_expiry(session: AsyncSession, key: ApiKey, when: datetime) -> ApiKey:
    key.expires_at = when
    await session.flush()
    return key


async def touch_last_used(session: AsyncSession, seen: dict[uuid.UUID, datetime]) -> None:
    """Write many last-used times at once (platform scope: keys of several tenants)."""
    for key_id, when in seen.items():
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < when))
            .values(last_used_at=when)
        )
