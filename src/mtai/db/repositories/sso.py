"""A tenant's OpenID Connect provider and the SSO identities bound to its members."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete as delete_rows
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import SsoIdentity, SsoProvider


async def get(session: AsyncSession, tenant_id: uuid.UUID) -> SsoProvider | None:
    return await session.get(SsoProvider, tenant_id)


async def put(session: AsyncSession, tenant_id: uuid.UUID, **fields: Any) -> SsoProvider:
    provider = await session.get(SsoProvider, tenant_id)
    if provider is None:
        provider = SsoProvider(tenant_id=tenant_id, **fields)
        session.add(provider)
    else:
        for key, value in fields.items():
            setattr(provider, key, value)
    await session.flush()
    await session.refresh(provider)
    return provider


async def delete(session: AsyncSession, provider: SsoProvider) -> None:
    await session.delete(provider)
    await session.flush()


async def enforced(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    result = await session.execute(
        select(SsoProvider.enforce_sso).where(
            SsoProvider.tenant_id == tenant_id, SsoProvider.enabled.is_(True)
        )
    )
    return bool(result.scalar_one_or_none())


async def by_verified_domain(session: AsyncSession, domain: str) -> list[SsoProvider]:
    """Enabled providers whose tenant holds `domain` verified; crosses tenants (platform scope)."""
    result = await session.execute(
        select(SsoProvider).where(
            SsoProvider.verified_domains.contains([domain]), SsoProvider.enabled.is_(True)
        )
    )
    return list(result.scalars())


async def by_scim_token(session: AsyncSession, digest: bytes) -> SsoProvider | None:
    """The provider whose SCIM token hashes to `digest`; crosses tenants (platform scope)."""
    result = await session.execute(select(SsoProvider).where(SsoProvider.scim_token_hash == digest))
    return result.scalar_one_or_none()


async def lock_subject(
    session: AsyncSession, tenant_id: uuid.UUID, issuer: str, subject: str
) -> None:
    """Serialise sign-ins of one subject until the transaction ends: two first sign-ins at once
    would otherwise both find no binding and race to make one."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"mtai.sso|{tenant_id}|{issuer}|{subject}"},
    )


async def identity(
    session: AsyncSession, tenant_id: uuid.UUID, issuer: str, subject: str
) -> SsoIdentity | None:
    return await session.get(SsoIdentity, (tenant_id, issuer, subject))


async def identity_of_user(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> SsoIdentity | None:
    result = await session.execute(
        select(SsoIdentity).where(
            SsoIdentity.tenant_id == tenant_id, SsoIdentity.user_id == user_id
        )
    )
    return result.scalar_one_or_none()


async def is_bound(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether any tenant's provider vouches for this identity; crosses tenants (platform)."""
    result = await session.execute(
        select(SsoIdentity.user_id).where(SsoIdentity.user_id == user_id).limit(1)
    )
    return result.scalar_one_or_none() is not None


async def bind(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    issuer: str,
    subject: str,
    user_id: uuid.UUID,
    email: str,
    now: datetime,
) -> SsoIdentity:
    binding = SsoIdentity(
        tenant_id=tenant_id,
        issuer=issuer,
        subject=subject,
        user_id=user_id,
        email=email,
        last_login_at=now,
    )
    session.add(binding)
    await session.flush()
    return binding


async def touch(session: AsyncSession, binding: SsoIdentity, *, email: str, now: datetime) -> None:
    binding.email = email
    binding.last_login_at = now
    await session.flush()


async def unbind_other_issuers(session: AsyncSession, tenant_id: uuid.UUID, issuer: str) -> int:
    """Forget the tenant's bindings to any issuer but `issuer` (its provider was replaced)."""
    result = await session.execute(
        delete_rows(SsoIdentity)
        .where(SsoIdentity.tenant_id == tenant_id, SsoIdentity.issuer != issuer)
        .returning(SsoIdentity.subject)
    )
    return len(result.all())
