from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import Membership, Tenant, User


async def add(
    session: AsyncSession, *, tenant_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> Membership:
    membership = Membership(tenant_id=tenant_id, user_id=user_id, role=role)
    session.add(membership)
    await session.flush()
    await session.refresh(membership)
    return membership


async def get(session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
    return await session.get(Membership, (tenant_id, user_id))


async def get_with_user(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Membership, User] | None:
    result = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.tenant_id == tenant_id, Membership.user_id == user_id)
    )
    row = result.one_or_none()
    return (row[0], row[1]) if row is not None else None


async def list_page(
    session: AsyncSession, tenant_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[tuple[Membership, User]], int]:
    result = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.tenant_id == tenant_id)
        .order_by(Membership.created_at, User.email)
        .limit(limit)
        .offset(offset)
    )
    total = await session.execute(
        select(func.count()).select_from(Membership).where(Membership.tenant_id == tenant_id)
    )
    return [(m, u) for m, u in result.all()], int(total.scalar_one())


async def for_user(session: AsyncSession, user_id: uuid.UUID) -> list[tuple[Membership, Tenant]]:
    """All of a user's tenants; needs the platform scope, since it crosses tenants."""
    result = await session.execute(
        select(Membership, Tenant)
        .join(Tenant, Tenant.id == Membership.tenant_id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.created_at)
    )
    return [(m, t) for m, t in result.all()]


async def count_role(session: AsyncSession, tenant_id: uuid.UUID, role: str) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(Membership)
        .where(Membership.tenant_id == tenant_id, Membership.role == role)
    )
    return int(result.scalar_one())


async def set_role(session: AsyncSession, membership: Membership, role: str) -> Membership:
    membership.role = role
    await session.flush()
    return membership


async def remove(session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(Membership)
        .where(Membership.tenant_id == tenant_id, Membership.user_id == user_id)
        .returning(Membership.user_id)
    )
    return result.scalar_one_or_none() is not None
