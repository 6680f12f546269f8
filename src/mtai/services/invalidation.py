"""Evict cached auth state here and, once the transaction commits, in every other process."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.notify import notify
from mtai.services.auth_cache import AuthCache


async def invalidate(session: AsyncSession, cache: AuthCache[object], *keys: str) -> None:
    for key in keys:
        cache.invalidate(key)
        await notify(session, key)
