"""Administration: the audit trail (stats and usage arrive with the gateway)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from mtai.api.deps import PagingDep, PrincipalDep, RuntimeDep
from mtai.api.schemas import Page, ResponseModel
from mtai.services import audit

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class AuditOut(ResponseModel):
    id: int
    tenant_id: uuid.UUID | None
    actor_type: str
    actor_id: str | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]
    request_id: str | None
    created_at: datetime


@router.get("/audit", response_model=Page[AuditOut])
async def list_audit(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    paging: PagingDep,
    action: Annotated[str | None, Query(max_length=64, examples=["api_key.revoke"])] = None,
) -> Page[AuditOut]:
    items, total = await audit.list_events(
        runtime.db, principal, action=action, limit=paging.limit, offset=paging.offset
    )
    return Page[AuditOut](
        items=[AuditOut.model_validate(e) for e in items],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )
