from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import ProviderCredential


async def list_for(session: AsyncSession, tenant_id: uuid.UUID) -> list[ProviderCredential]:
    result = await session.execute(
        select(ProviderCredential)
        .where(ProviderCredential.tenant_id == tenant_id)
        .order_by(ProviderCredential.provider)
    )
    return list(result.scalars())


async def put(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    provider: str,
    api_key_encrypted: bytes,
    base_url: str | None,
) -> None:
    statement = insert(ProviderCredential).values(
        tenant_id=tenant_id,
        provider=provider,
        api_key_encrypted=api_key_encrypted,
        base_url=base_url,
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[ProviderCredential.tenant_id, ProviderCredential.provider],
            set_={"api_key_encrypted": api_key_encrypted, "base_url": base_url},
        )
    )


async def remove(session: AsyncSession, tenant_id: uuid.UUID, provider: str) -> bool:
    result = await session.execute(
        delete(ProviderCredential)
        .where(ProviderCredential.tenant_id == tenant_id, ProviderCredential.provider == provider)
        .returning(ProviderCredential.provider)
    )
    return result.scalar_one_or_none() is not None


async def with_version(session: AsyncSession, version: bytes) -> list[ProviderCredential]:
    """Every tenant's credentials whose ciphertext starts with `version` (platform scope)."""
    result = await session.execute(
        select(ProviderCredential).where(
            func.substring(ProviderCredential.api_key_encrypted, 1, 1) == version
        )
    )
    return list(result.scalars())


async def replace_ciphertext(
    session: AsyncSession, tenant_id: uuid.UUID, provider: str, old: bytes, new: bytes
) -> None:
    """Swap one ciphertext for another, unless the row changed meanwhile."""
    await session.execute(
        update(ProviderCredential)
        .where(
            ProviderCredential.tenant_id == tenant_id,
            ProviderCredential.provider == provider,
            ProviderCredential.api_key_encrypted == old,
        )
        .values(api_key_encrypted=new)
    )
