"""Login and the caller's own identity."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request, status
from pydantic import Field

from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.schemas import Email, ResponseModel, StrictModel
from mtai.services.principal import Role

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginRequest(StrictModel):
    email: Email
    password: str = Field(min_length=1, max_length=256)
    platform: bool = Field(
        default=False,
        description="Platform administrators: a token for no tenant, to administer the "
        "whole platform, even when they are members of tenants.",
    )


class TenantRef(ResponseModel):
    id: uuid.UUID
    slug: str
    name: str
    role: Role


class UserInfo(ResponseModel):
    id: uuid.UUID
    email: str
    display_name: str
    is_platform_admin: bool
    tenant: TenantRef | None
    tenants: list[TenantRef]


class LoginResponse(ResponseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserInfo


class MeResponse(ResponseModel):
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    tenant_id: uuid.UUID | None
    role: Role | None
    scopes: list[str]
    is_platform_admin: bool
    email: str | None = None


@router.post("/login", response_model=LoginResponse)
async def login(
    body: LoginRequest,
    runtime: RuntimeDep,
    request: Request,
    x_tenant_id: Annotated[str | None, Header()] = None,
) -> LoginResponse:
    await runtime.limits.throttle_login(
        body.email,
        request.client.host if request.client else "unknown",
        per_email=runtime.settings.login_attempts_per_email,
        per_ip=runtime.settings.login_attempts_per_ip,
    )
    result = await runtime.auth.login(
        body.email, body.password, x_tenant_id, platform=body.platform
    )
    refs = [TenantRef(id=t.id, slug=t.slug, name=t.name, role=r) for t, r in result.tenants]
    current = (
        TenantRef(
            id=result.tenant.id, slug=result.tenant.slug, name=result.tenant.name, role=result.role
        )
        if result.tenant is not None and result.role is not None
        else None
    )
    user = UserInfo(
        id=result.user.id,
        email=result.user.email,
        display_name=result.user.display_name,
        is_platform_admin=result.user.is_platform_admin,
        tenant=current,
        tenants=refs,
    )
    return LoginResponse(access_token=result.access_token, expires_in=result.expires_in, user=user)


class PasswordChange(StrictModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256, description="12+ characters.")


@router.post(
    "/password", status_code=status.HTTP_204_NO_CONTENT, summary="Change your own password"
)
async def change_password(
    body: PasswordChange, principal: PrincipalDep, runtime: RuntimeDep, request: Request
) -> None:
    # Guessing the current password here is throttled like logging in.
    if principal.user_id is not None:
        account = await runtime.users.own_account(principal.user_id)
        await runtime.limits.throttle_login(
            account.email,
            request.client.host if request.client else "unknown",
            per_email=runtime.settings.login_attempts_per_email,
            per_ip=runtime.settings.login_attempts_per_ip,
        )
    await runtime.users.change_password(principal, body.current_password, body.new_password)


@router.get("/me", response_model=MeResponse)
async def me(principal: PrincipalDep, runtime: RuntimeDep) -> MeResponse:
    email = None
    if principal.user_id is not None:
        email = (await runtime.users.own_account(principal.user_id)).email
    return MeResponse(
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        tenant_id=principal.tenant_id,
        role=principal.role,
        scopes=sorted(principal.scopes),
        is_platform_admin=principal.is_platform_admin,
        email=email,
    )
