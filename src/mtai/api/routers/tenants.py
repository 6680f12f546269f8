"""Tenants, for platform administrators."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import Field

from mtai.api.deps import PagingDep, PrincipalDep, RuntimeDep
from mtai.api.routers.invitations import InvitationIssued, issued_out
from mtai.api.schemas import Email, Page, ResponseModel, StrictModel

router = APIRouter(prefix="/api/v1/tenants", tags=["tenants"])

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", examples=["acme"])]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class TenantCreate(StrictModel):
    slug: Slug
    name: Name
    settings: dict[str, Any] = Field(default_factory=dict)
    owner_email: Email | None = Field(
        default=None,
        description="Invited as owner: the answer carries the invitation's token, once.",
    )


class TenantUpdate(StrictModel):
    name: Name | None = None
    settings: dict[str, Any] | None = None


class TenantOut(ResponseModel):
    id: uuid.UUID
    slug: str
    name: str
    status: str
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class TenantCreated(TenantOut):
    owner_invitation: InvitationIssued | None = Field(
        default=None, description="The owner's invitation (its token shown once)."
    )


@router.post("/", response_model=TenantCreated, status_code=status.HTTP_201_CREATED)
async def create_tenant(
    body: TenantCreate, principal: PrincipalDep, runtime: RuntimeDep
) -> TenantCreated:
    tenant, issued = await runtime.tenants.create(
        principal,
        slug=body.slug,
        name=body.name,
        settings=body.settings,
        owner_email=body.owner_email,
    )
    invitation = (
        issued_out(runtime.invitations.shown(issued), issued) if issued is not None else None
    )
    return TenantCreated.model_validate(tenant).model_copy(update={"owner_invitation": invitation})


@router.get("/", response_model=Page[TenantOut])
async def list_tenants(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    paging: PagingDep,
    status_filter: Annotated[Literal["active", "suspended"] | None, Query(alias="status")] = None,
) -> Page[TenantOut]:
    items, total = await runtime.tenants.list(
        principal, status=status_filter, limit=paging.limit, offset=paging.offset
    )
    return Page[TenantOut].of([TenantOut.model_validate(t) for t in items], total, paging)


@router.get("/{tenant_id}", response_model=TenantOut)
async def get_tenant(
    tenant_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> TenantOut:
    return TenantOut.model_validate(await runtime.tenants.get(principal, tenant_id))


@router.patch("/{tenant_id}", response_model=TenantOut)
async def update_tenant(
    tenant_id: uuid.UUID, body: TenantUpdate, principal: PrincipalDep, runtime: RuntimeDep
) -> TenantOut:
    tenant = await runtime.tenants.update(
        principal, tenant_id, name=body.name, settings=body.settings
    )
    return TenantOut.model_validate(tenant)


@router.post("/{tenant_id}/suspend", response_model=TenantOut)
async def suspend_tenant(
    tenant_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> TenantOut:
    return TenantOut.model_validate(
        await runtime.tenants.set_status(principal, tenant_id, "suspended")
    )


@router.post("/{tenant_id}/reactivate", response_model=TenantOut)
async def reactivate_tenant(
    tenant_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> TenantOut:
    return TenantOut.model_validate(
        await runtime.tenants.set_status(principal, tenant_id, "active")
    )


@router.delete("/{tenant_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_tenant(tenant_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep) -> None:
    await runtime.tenants.delete(principal, tenant_id)
