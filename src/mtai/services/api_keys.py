"""API keys: shown once, stored as a peppered hash, revocable, rotatable with a grace period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.engine import Database
from mtai.db.models import ApiKey
from mtai.db.repositories import api_keys as keys_repo
from mtai.errors import Conflict, Forbidden, InvalidInput, NotFound
from mtai.services import audit, key_material
from mtai.services.auth import key_cache_key
from mtai.services.auth_cache import AuthCache
from mtai.services.invalidation import invalidate
from mtai.services.principal import Principal, Scope


def _check_scopes(actor: Principal, scopes: list[Scope]) -> list[str]:
    if not scopes:
        raise InvalidInput("Give the key at least one scope: chat, rag:read, rag:write or admin.")
    beyond = set(scopes) - actor.scopes
    if beyond:
        raise Forbidden(
            f"You cannot grant scopes you do not hold: {', '.join(sorted(beyond))}.",
            code="insufficient_scope",
        )
    return sorted(set(scopes))


async def creator_of(session: AsyncSession, actor: Principal) -> uuid.UUID | None:
    """The person what `actor` makes (a key, an invitation) is attributed to: the logged-in
    caller, or, acting with a key, that key's creator (removing that person revokes it all)."""
    if actor.user_id is not None or actor.api_key_id is None:
        return actor.user_id
    parent = await keys_repo.get(session, actor.api_key_id)
    return parent.created_by if parent is not None else None


class ApiKeyService:
    def __init__(
        self, db: Database, cache: AuthCache[object], *, pepper: str, default_grace_seconds: int
    ) -> None:
        self.db = db
        self.cache = cache
        self.pepper = pepper
        self.default_grace_seconds = default_grace_seconds

    async def create(
        self,
        actor: Principal,
        *,
        name: str,
        scopes: list[Scope],
        expires_at: datetime | None,
        tenant_id: uuid.UUID | None = None,
    ) -> tuple[ApiKey, str]:
        """The stored key and its plaintext, which is never available again."""
        tenant_id = tenant_id or actor.require_tenant_admin()
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise InvalidInput("expires_at must be in the future.")
        allowed = _check_scopes(actor, scopes)
        new = key_material.generate()
        async with self.db.tenant(tenant_id) as session:
            key = await keys_repo.create(
                session,
                tenant_id=tenant_id,
                name=name,
                prefix=new.prefix,
                key_hash=key_material.digest(self.pepper, new.plaintext),
                scopes=allowed,
                expires_at=expires_at,
                created_by=await creator_of(session, actor),
            )
            await audit.record(
                session,
                actor,
                "api_key.create",
                tenant_id=tenant_id,
                target_type="api_key",
                target_id=key.id,
                details={"name": name, "scopes": allowed},
            )
        return key, new.plaintext

    async def list(self, actor: Principal, *, limit: int, offset: int) -> tuple[list[ApiKey], int]:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            return await keys_repo.list_page(session, tenant_id, limit=limit, offset=offset)

    async def get(self, actor: Principal, key_id: uuid.UUID) -> ApiKey:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            key = await keys_repo.get(session, key_id)
        if key is None:
            raise NotFound("API key not found.")
        return key

    async def set_limits(
        self, actor: Principal, key_id: uuid.UUID, limits: dict[str, Any]
    ) -> ApiKey:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            key = await keys_repo.get(session, key_id)
            if key is None:
                raise NotFound("API key not found.")
            key = await keys_repo.set_limits(session, key, limits)
            await audit.record(
                session,
                actor,
                "api_key.limits",
                tenant_id=tenant_id,
                target_type="api_key",
                target_id=key_id,
                details={"limits": limits},
            )
            await invalidate(session, self.cache, key_cache_key(key.prefix))
        return key

    async def revoke(self, actor: Principal, key_id: uuid.UUID) -> ApiKey:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            key = await keys_repo.get(session, key_id)
            if key is None:
                raise NotFound("API key not found.")
            if key.revoked_at is None:
                key = await keys_repo.set_revoked(session, key, datetime.now(UTC))
                await audit.record(
                    session,
                    actor,
                    "api_key.revoke",
                    tenant_id=tenant_id,
                    target_type="api_key",
                    target_id=key_id,
                )
            await invalidate(session, self.cache, key_cache_key(key.prefix))
        return key

    async def rotate(
        self, actor: Principal, key_id: uuid.UUID, *, grace_seconds: int | None
    ) -> tuple[ApiKey, str]:
        """A new key with the same name, scopes and limits, whose monthly budgets count what the
        old key spent this month; the old one works for the grace period."""
        tenant_id = actor.require_tenant_admin()
        grace = self.default_grace_seconds if grace_seconds is None else grace_seconds
        now = datetime.now(UTC)
        new = key_material.generate()
        async with self.db.tenant(tenant_id) as session:
            old = await keys_repo.get(session, key_id)
            if old is None:
                raise NotFound("API key not found.")
            if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
                raise Conflict("This key is revoked or expired; create a new key instead.")
            _check_scopes(actor, [Scope(s) for s in old.scopes])
            key = await keys_repo.create(
                session,
                tenant_id=tenant_id,
                name=old.name,
                prefix=new.prefix,
                key_hash=key_material.digest(self.pepper, new.plaintext),
                scopes=list(old.scopes),
                expires_at=old.expires_at,
                created_by=await creator_of(session, actor),
                rotated_from=old.id,
            )
            # The same limits, and the same month: the key's budgets are seeded from the spend
            # of every key it was rotated from (usage_repo.month_spend follows the chain).
            if old.limits:
                key = await keys_repo.set_limits(session, key, dict(old.limits))
            grace_end = now + timedelta(seconds=grace)
            if old.expires_at is None or old.expires_at > grace_end:
                await keys_repo.set_expiry(session, old, grace_end)
            await audit.record(
                session,
                actor,
                "api_key.rotate",
                tenant_id=tenant_id,
                target_type="api_key",
                target_id=old.id,
                details={"new_key_id": str(key.id), "grace_seconds": grace},
            )
            await invalidate(session, self.cache, key_cache_key(old.prefix))
        return key, new.plaintext
