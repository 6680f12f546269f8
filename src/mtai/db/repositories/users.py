from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import User


async def create(
    session: AsyncSession,
    *,
    email: str,
    password_hash: str | None,
    display_name: str = "",
    is_platform_admin: bool = False,
    email_verified: bool = False,
) -> User:
    user = User(
        id=uuid.uuid4(),
        email=email,
        password_hash=password_hash,
        display_name=display_name,
        is_platform_admin=is_platform_admin,
        is_active=True,
        email_verified=email_verified,
    )
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def lock_first_start(session: AsyncSession) -> None:
    """Serialise first starts until the transaction ends: API tasks may start together."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('mtai.first_start'))"))


async def count_platform_admins(session: AsyncSession) -> int:
    result = await session.execute(
        select(func.count()).select_from(User).where(User.is_platform_admin.is_(True))
    )
    return int(result.scalar_one())


async def update(session: AsyncSession, user: User, **fields: Any) -> User:
    for key, value in fields.items():
        setattr(user, key, value)
    await session.flush()
    return user


async def bump_token_version(session: AsyncSession, user: User) -> User:
    """End every session of the user: tokens carrying an older version stop working."""
    user.token_version = user.token_version + 1
    await session.flush()
    return user
