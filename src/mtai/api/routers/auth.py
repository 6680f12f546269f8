"""Login and the caller's own identity."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Header, Request, status
from pydantic import Field

from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.schemas import Email, ResponseModel, StrictModel
from mtai.errors import Forbidden, Unauthorized
from mtai.runtime import Runtime
from mtai.services.auth import LoginResult
from mtai.services.principal import Role

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
T = TypeVar("T")


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


def client_address(request: Request) -> str:
    """The client as the login throttles count it: an IPv6 address by its /64, since one host
    commonly holds the whole /64 and could otherwise take a fresh address for every guess."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 client a.b.c.d
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host


def login_response(result: LoginResult) -> LoginResponse:
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


async def guarded(
    runtime: Runtime, email: str, client: str, attempt: Callable[[], Awaitable[T]]
) -> T:
    """Run a password check under the login throttle; a wrong one counts for (email, client)."""
    await runtime.limits.throttle_login(client, per_ip=runtime.settings.login_attempts_per_ip)
    await runtime.login_throttle.check(email, client)  # takes this (email, client)'s turn
    try:
        result = await attempt()
        await runtime.login_throttle.succeeded(email, client)
    except (Unauthorized, Forbidden) as exc:
        if exc.code in ("invalid_credentials", "wrong_password"):
            await runtime.login_throttle.failed(email, client)
        raise
    finally:
        await runtime.login_throttle.release(email, client)
    return result


@router.post("/login", response_model=LoginResponse)
async def login(
    body: LoginRequest,
    runtime: RuntimeDep,
    request: Request,
    x_tenant_id: Annotated[str | None, Header()] = None,
) -> LoginResponse:
    result = await guarded(
        runtime,
        body.email,
        client_address(request),
        lambda: runtime.auth.login(body.email, body.password, x_tenant_id, platform=body.platform),
    )
    return login_response(result)


class PasswordChange(StrictModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256, description="12+ characters.")


@router.post(
    "/password", status_code=status.HTTP_204_NO_CONTENT, summary="Change your own password"
)
async def change_password(
    body: PasswordChange, principal: PrincipalDep, runtime: RuntimeDep, request: Request
) -> None:
    """Every session of the account ends, this one included: log in again with the new password."""

    def change() -> Awaitable[None]:
        return runtime.users.change_password(principal, body.current_password, body.new_password)

    if principal.user_id is None or principal.api_key_id is not None:
        await change()  # refused: API keys have no password
        return
    # Guessing the current password here is throttled like logging in.
    account = await runtime.users.own_account(principal.user_id)
    await guarded(runtime, account.email, client_address(request), change)


@router.post(
    "/sign-out-everywhere",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End every session of your account",
)
async def sign_out_everywhere(principal: PrincipalDep, runtime: RuntimeDep) -> None:
    await runtime.users.sign_out_everywhere(principal)


class TenantBrief(ResponseModel):
    id: uuid.UUID
    slug: str
    name: str


class MyInvitation(ResponseModel):
    id: uuid.UUID
    email: str
    role: Role
    tenant: TenantBrief
    expires_at: datetime


@router.get(
    "/invitations",
    response_model=list[MyInvitation],
    summary="Invitations addressed to you (accepting needs the invitation's token)",
)
async def my_invitations(principal: PrincipalDep, runtime: RuntimeDep) -> list[MyInvitation]:
    found = await runtime.invitations.pending_for(principal)
    return [
        MyInvitation(
            id=i.id,
            email=i.email,
            role=Role(i.role or Role.MEMBER),
            tenant=TenantBrief(id=t.id, slug=t.slug, name=t.name),
            expires_at=i.expires_at,
        )
        for i, t in found
    ]


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
