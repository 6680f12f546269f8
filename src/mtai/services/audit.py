"""The audit trail: written in the same transaction as the change it describes."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mtai.context import request_id_var
from mtai.db.engine import Database
from mtai.db.models import AuditEvent
from mtai.db.repositories import audit as audit_repo
from mtai.services.principal import Principal


async def record(
    session: AsyncSession,
    actor: Principal | None,
    action: str,
    *,
    tenant_id: uuid.UUID | None,
    target_type: str | None = None,
    target_id: object | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    actor_type, actor_id = actor.actor if actor is not None else ("system", None)
    await audit_repo.append(
        session,
        tenant_id=tenant_id,
        actor_type=actor_type,
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        details=details or {},
        request_id=request_id_var.get(),
    )


async def list_events(
    db: Database, principal: Principal, *, action: str | None, limit: int, offset: int
) -> tuple[list[AuditEvent], int]:
    """Tenant admins see their tenant's events; a platform admin with no tenant chosen sees all."""
    if principal.is_platform_admin and principal.tenant_id is None:
        async with db.platform() as session:
            return await audit_repo.list_page(
                session, tenant_id=None, action=action, limit=limit, offset=offset
            )
    tenant_id = principal.require_tenant_admin()
    async with db.tenant(tenant_id) as session:
        return await audit_repo.list_page(
            session, tenant_id=tenant_id, action=action, limit=limit, offset=offset
        )
