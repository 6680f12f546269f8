"""Limits and budgets, with what is being used right now."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.schemas import ResponseModel
from mtai.runtime import Runtime
from mtai.services import tenant_settings
from mtai.services.limits import LimitSettings, Scope

router = APIRouter(tags=["limits"])


class LimitsOut(ResponseModel):
    limits: LimitSettings
    consumption: dict[str, Any]


async def _view(runtime: Runtime, scope: Scope) -> LimitsOut:
    return LimitsOut(limits=scope.limits, consumption=await runtime.limits.consumption(scope))


@router.get("/api/v1/tenants/{tenant_id}/limits", response_model=LimitsOut)
async def get_tenant_limits(
    tenant_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> LimitsOut:
    tenant = await runtime.tenants.get(principal, tenant_id)
    limits = tenant_settings.parse(tenant.settings).limits
    return await _view(runtime, Scope(tenant_id, None, limits))


@router.put("/api/v1/tenants/{tenant_id}/limits", response_model=LimitsOut)
async def put_tenant_limits(
    tenant_id: uuid.UUID, body: LimitSettings, principal: PrincipalDep, runtime: RuntimeDep
) -> LimitsOut:
    await runtime.tenants.set_limits(
        principal, tenant_id, body.model_dump(mode="json", exclude_none=True)
    )
    return await _view(runtime, Scope(tenant_id, None, body))


@router.get("/api/v1/limits", response_model=LimitsOut, summary="The caller's tenant's limits")
async def get_own_limits(principal: PrincipalDep, runtime: RuntimeDep) -> LimitsOut:
    tenant_id = principal.require_tenant_admin()
    settings = await runtime.auth.tenant_settings(tenant_id)
    return await _view(runtime, Scope(tenant_id, None, tenant_settings.parse(settings).limits))


@router.get("/api/v1/keys/{key_id}/limits", response_model=LimitsOut)
async def get_key_limits(
    key_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> LimitsOut:
    key = await runtime.keys.get(principal, key_id)
    return await _view(
        runtime, Scope(key.tenant_id, key.id, LimitSettings.model_validate(key.limits))
    )


@router.put("/api/v1/keys/{key_id}/limits", response_model=LimitsOut)
async def put_key_limits(
    key_id: uuid.UUID, body: LimitSettings, principal: PrincipalDep, runtime: RuntimeDep
) -> LimitsOut:
    key = await runtime.keys.set_limits(
        principal, key_id, body.model_dump(mode="json", exclude_none=True)
    )
    return await _view(runtime, Scope(key.tenant_id, key.id, body))
