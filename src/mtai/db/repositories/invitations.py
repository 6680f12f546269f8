from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import Invitation, Tenant


def _pending(now: datetime) -> list[Any]:
    return [
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > now,
    ]


async def create(session: AsyncSession, **fields: Any) -> Invitation:
    invitation = Invitation(id=uuid.uuid4(), **fields)
    session.add(invitation)
    await session.flush()
    await session.refresh(invitation)
    return invitation


async def get(session: AsyncSession, invitation_id: uuid.UUID) -> Invitation | None:
    return await session.get(Invitation, invitation_id)


async def open_for(
    session: AsyncSession, tenant_id: uuid.UUID | None, email: str
) -> Invitation | None:
    """The not yet accepted or revoked invitation of `email` to the tenant (expired or not)."""
    tenant = (
        Invitation.tenant_id.is_(None) if tenant_id is None else Invitation.tenant_id == tenant_id
    )
    result = await session.execute(
        select(Invitation)
        .where(
            tenant,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .with_for_update()
    )
    return result.scalar_one_or_none()


async def by_token_hash(session: AsyncSession, token_hash: bytes) -> Invitation | None:
    """Locked until the transaction ends, so two accepts of one token cannot both succeed."""
    result = await session.execute(
        select(Invitation).where(Invitation.token_hash == token_hash).with_for_update()
    )
    return result.scalar_one_or_none()


async def list_pending(
    session: AsyncSession, tenant_id: uuid.UUID, now: datetime, *, limit: int, offset: int
) -> tuple[list[Invitation], int]:
    where = [Invitation.tenant_id == tenant_id, *_pending(now)]
    result = await session.execute(
        select(Invitation)
        .where(*where)
        .order_by(Invitation.created_at.desc(), Invitation.id)
        .limit(limit)
        .offset(offset)
    )
    total = await session.execute(select(func.count()).select_from(Invitation).where(*where))
    return list(result.scalars()), int(total.scalar_one())


async def pending_for_email(
    session: AsyncSession, email: str, now: datetime
) -> list[tuple[Invitation, Tenant]]:
    """Pending tenant invitations addressed to `email`; crosses tenants (platform scope)."""
    result = await session.execute(
        select(Invitation, Tenant)
        .join(Tenant, Tenant.id == Invitation.tenant_id)
        .where(Invitation.email == email, *_pending(now))
        .order_by(Invitation.created_at)
    )
    return [(i, t) for i, t in result.all()]


async def update(session: AsyncSession, invitation: Invitation, **fields: Any) -> Invitation:
    for key, value in fields.items():
        setattr(invitation, key, value)
    await session.flush()
    return invitation


async def pending_invited_by(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> list[Invitation]:
    """The tenant's pending invitations this user issued."""
    result = await session.execute(
        select(Invitation).where(
            Invitation.tenant_id == tenant_id, Invitation.invited_by == user_id, *_pending(now)
        )
    )
    return list(result.scalars())
