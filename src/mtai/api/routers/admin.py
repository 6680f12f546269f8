"""Administration: usage and cost, prompt logs, the audit trail."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query

from mtai.api.deps import PagingDep, PrincipalDep, RuntimeDep
from mtai.api.schemas import Page, ResponseModel
from mtai.services import audit
from mtai.services.usage_reports import totals

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
    return Page[AuditOut].of([AuditOut.model_validate(e) for e in items], total, paging)


class DailyUsageOut(ResponseModel):
    tenant_id: uuid.UUID
    day: date
    model: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    cached_read_tokens: int
    cached_write_tokens: int
    reasoning_tokens: int


class UsageTotals(ResponseModel):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    # Of prompt_tokens: read from and written to the provider's prompt cache; of
    # completion_tokens: spent reasoning.
    cached_read_tokens: int
    cached_write_tokens: int
    reasoning_tokens: int


class UsageOut(ResponseModel):
    since: date | None
    until: date | None
    totals: UsageTotals
    daily: list[DailyUsageOut]


class UsageEventOut(ResponseModel):
    request_id: str
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    latency_ms: int
    ttft_ms: int | None
    status: str
    error_code: str | None
    cached: bool
    api: str
    created_at: datetime
    cached_read_tokens: int
    cached_write_tokens: int
    reasoning_tokens: int
    tool_calls: int
    end_user: str | None  # the request's `user`, as the caller gave it


class PromptLogOut(ResponseModel):
    request_id: str
    model: str
    prompt: list[dict[str, Any]]
    response: str
    tool_calls: list[dict[str, Any]]  # the answer's calls: id, name, arguments
    created_at: datetime
    expires_at: datetime


@router.get("/usage", response_model=UsageOut, summary="Daily usage and cost per tenant and model")
async def usage(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    since: date | None = None,
    until: date | None = None,
) -> UsageOut:
    rows = await runtime.usage.daily(principal, since=since, until=until)
    summed = totals(rows)
    return UsageOut(
        since=since,
        until=until,
        totals=UsageTotals.model_validate(summed),
        daily=[DailyUsageOut.model_validate(r) for r in rows],
    )


@router.get("/usage/events", response_model=Page[UsageEventOut], summary="One row per request")
async def usage_events(
    principal: PrincipalDep, runtime: RuntimeDep, paging: PagingDep
) -> Page[UsageEventOut]:
    items, total = await runtime.usage.events(principal, limit=paging.limit, offset=paging.offset)
    return Page[UsageEventOut].of([UsageEventOut.model_validate(e) for e in items], total, paging)


@router.get("/prompt-logs", response_model=Page[PromptLogOut], summary="Where the tenant allows it")
async def prompt_logs(
    principal: PrincipalDep, runtime: RuntimeDep, paging: PagingDep
) -> Page[PromptLogOut]:
    items, total = await runtime.usage.prompt_logs(
        principal, limit=paging.limit, offset=paging.offset
    )
    return Page[PromptLogOut].of([PromptLogOut.model_validate(e) for e in items], total, paging)


@router.get("/stats", response_model=UsageTotals, summary="Totals of the last 30 days")
async def stats(principal: PrincipalDep, runtime: RuntimeDep) -> UsageTotals:
    return UsageTotals.model_validate(
        totals(await runtime.usage.daily(principal, since=None, until=None))
    )
