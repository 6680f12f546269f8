from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import Tenant


async def create(
    session: AsyncSession, *, slug: str, name: str, settings: dict[str, Any]
) -> Tenant:
    tenant = Tenant(id=uuid.uuid4(), slug=slug, name=name, status="active", settings=settings)
    session.add(tenant)
    await session.flush()
    await session.refresh(tenant)
    return tenant


async def get(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def existing_ids(session: AsyncSession, ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `ids` are tenants (still)."""
    result = await session.execute(select(Tenant.id).where(Tenant.id.in_(ids)))
    return set(result.scalars())


async def get_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    result = await session.execute(select(Tenant).where(Tenant.slug == slug))
    return result.scalar_one_or_none()


async def slug_taken(session: AsyncSession, slug: str) -> bool:
    result = await session.execute(select(func.count()).where(Tenant.slug == slug))
    return bool(result.scalar_one())


async def list_page(
    session: AsyncSession, *, limit: int, offset: int, status: str | None = None
) -> tuple[list[Tenant], int]:
    query = select(Tenant)
    count = select(func.count()).select_from(Tenant)
    if status is not None:
        query = query.where(Tenant.status == status)
        count = count.where(Tenant.status == status)
    rows = await session.execute(
        query.order_by(Tenant.created_at, Tenant.id).limit(limit).offset(offset)
    )
    total = (await session.execute(count)).scalar_one()
    return list(rows.scalars()), int(total)


async def update(session: AsyncSession, tenant: Tenant, **fields: Any) -> Tenant:
    for key, value in fields.items():
        setattr(tenant, key, value)
    await session.flush()
    await session.refresh(tenant)
    return tenant


async def delete_by_id(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(Tenant).where(Tenant.id == tenant_id).returning(Tenant.id)
    )
    return result.scalar_one_or_none() is not None
