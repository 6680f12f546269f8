"""Tenants: created, changed, suspended and deleted by platform administrators only."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from mtai.db.engine import Database
from mtai.db.models import Tenant
from mtai.db.repositories import tenants as tenants_repo
from mtai.errors import Conflict, InvalidInput, NotFound
from mtai.providers.storage.base import ObjectStore, tenant_prefix
from mtai.services import audit, tenant_settings
from mtai.services.auth import slug_cache_key, tenant_cache_key
from mtai.services.auth_cache import AuthCache
from mtai.services.invalidation import invalidate
from mtai.services.invitations import InvitationService, Issued
from mtai.services.principal import Principal, Role

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
MAX_SETTINGS_BYTES = 16 * 1024


def _check_slug(slug: str) -> str:
    if not SLUG.match(slug):
        raise InvalidInput(
            "Tenant slug must be 2-63 characters of lowercase letters, digits and '-', "
            "starting with a letter or digit."
        )
    return slug


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(settings)) > MAX_SETTINGS_BYTES:
        raise InvalidInput(f"Tenant settings must be at most {MAX_SETTINGS_BYTES} bytes of JSON.")
    tenant_settings.parse(settings)
    return settings


class TenantService:
    def __init__(
        self,
        db: Database,
        cache: AuthCache[object],
        store: ObjectStore,
        invitations: InvitationService,
    ) -> None:
        self.db = db
        self.cache = cache
        self.store = store
        self.invitations = invitations

    async def create(
        self,
        actor: Principal | None,
        *,
        slug: str,
        name: str,
        settings: dict[str, Any] | None = None,
        owner_email: str | None = None,
    ) -> tuple[Tenant, Issued | None]:
        """The new tenant, and the owner's invitation when an owner email was given.

        The owner becomes a member only by accepting it (a new identity chooses its password,
        an existing one logs in): no one else ever sets or learns the owner's password.
        """
        if actor is not None:
            actor.require_platform_admin()
        _check_slug(slug)
        async with self.db.platform() as session:
            if await tenants_repo.slug_taken(session, slug):
                raise Conflict(f"A tenant with slug '{slug}' already exists; choose another slug.")
            tenant = await tenants_repo.create(
                session, slug=slug, name=name, settings=_check_settings(settings or {})
            )
            invitation = None
            if owner_email is not None:
                invitation = await self.invitations.issue_in(
                    session, actor, tenant_id=tenant.id, email=owner_email, role=Role.OWNER
                )
            await audit.record(
                session,
                actor,
                "tenant.create",
                tenant_id=tenant.id,
                target_type="tenant",
                target_id=tenant.id,
                details={"slug": slug, "owner_email": owner_email},
            )
            # Another process may remember this slug as unknown (an earlier X-Tenant-ID).
            await invalidate(session, self.cache, slug_cache_key(slug))
        if invitation is not None:
            self.invitations.mail(invitation, tenant)
        return tenant, invitation

    async def list(
        self, actor: Principal, *, status: str | None, limit: int, offset: int
    ) -> tuple[list[Tenant], int]:
        actor.require_platform_admin()
        async with self.db.platform() as session:
            return await tenants_repo.list_page(session, limit=limit, offset=offset, status=status)

    async def get(self, actor: Principal, tenant_id: uuid.UUID) -> Tenant:
        actor.require_platform_admin()
        async with self.db.platform() as session:
            tenant = await tenants_repo.get(session, tenant_id)
        if tenant is None:
            raise NotFound("Tenant not found.")
        return tenant

    async def update(
        self,
        actor: Principal,
        tenant_id: uuid.UUID,
        *,
        name: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Tenant:
        actor.require_platform_admin()
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if settings is not None:
            changes["settings"] = _check_settings(settings)
        async with self.db.platform() as session:
            tenant = await tenants_repo.get(session, tenant_id)
            if tenant is None:
                raise NotFound("Tenant not found.")
            tenant = await tenants_repo.update(session, tenant, **changes)
            await audit.record(
                session,
                actor,
                "tenant.update",
                tenant_id=tenant_id,
                target_type="tenant",
                target_id=tenant_id,
                details={"fields": sorted(changes)},
            )
            await invalidate(session, self.cache, tenant_cache_key(tenant_id))
        return tenant

    async def set_limits(
        self, actor: Principal, tenant_id: uuid.UUID, limits: dict[str, Any]
    ) -> Tenant:
        """Replace the tenant's limits, keeping its other settings."""
        current = await self.get(actor, tenant_id)
        return await self.update(actor, tenant_id, settings={**current.settings, "limits": limits})

    async def set_status(
        self, actor: Principal | None, tenant_id: uuid.UUID, status: str
    ) -> Tenant:
        if actor is not None:
            actor.require_platform_admin()
        async with self.db.platform() as session:
            tenant = await tenants_repo.get(session, tenant_id)
            if tenant is None:
                raise NotFound("Tenant not found.")
            tenant = await tenants_repo.update(session, tenant, status=status)
            action = "tenant.suspend" if status == "suspended" else "tenant.reactivate"
            await audit.record(
                session,
                actor,
                action,
                tenant_id=tenant_id,
                target_type="tenant",
                target_id=tenant_id,
            )
            await invalidate(session, self.cache, tenant_cache_key(tenant_id))
        return tenant

    async def delete(self, actor: Principal, tenant_id: uuid.UUID) -> None:
        actor.require_platform_admin()
        async with self.db.platform() as session:
            tenant = await tenants_repo.get(session, tenant_id)
            if tenant is None:
                raise NotFound("Tenant not found.")
            await tenants_repo.delete_by_id(session, tenant_id)
            await audit.record(
                session,
                actor,
                "tenant.delete",
                tenant_id=tenant_id,
                target_type="tenant",
                target_id=tenant_id,
                details={"slug": tenant.slug},
            )
            await invalidate(
                session, self.cache, tenant_cache_key(tenant_id), slug_cache_key(tenant.slug)
            )
        # Its stored documents go after the rows (a failure here leaves orphans, not dangling rows).
        await self.store.delete_prefix(tenant_prefix(tenant_id))

    async def resolve(self, ref: str) -> Tenant:
        """A tenant by id or slug, for the CLI."""
        async with self.db.platform() as session:
            try:
                tenant = await tenants_repo.get(session, uuid.UUID(ref))
            except ValueError:
                tenant = await tenants_repo.get_by_slug(session, ref)
        if tenant is None:
            raise NotFound(f"No tenant with id or slug '{ref}'.")
        return tenant
