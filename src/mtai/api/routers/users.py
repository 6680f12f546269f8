"""A tenant's users and their roles, for that tenant's admins."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status

from mtai.api.deps import PagingDep, PrincipalDep, RuntimeDep
from mtai.api.schemas import Email, ErrorResponse, Page, ResponseModel, StrictModel
from mtai.errors import Gone
from mtai.services.principal import Role
from mtai.services.users import Member

router = APIRouter(prefix="/api/v1/users", tags=["users"])


class UserUpdate(StrictModel):
    role: Role


class UserOut(ResponseModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: Role
    is_active: bool
    member_since: datetime


class IdentityRef(StrictModel):
    email: Email


def _out(member: Member) -> UserOut:
    membership, user = member
    return UserOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=Role(membership.role),
        is_active=user.is_active,
        member_since=membership.created_at,
    )


@router.get("", response_model=Page[UserOut])
async def list_users(
    principal: PrincipalDep, runtime: RuntimeDep, paging: PagingDep
) -> Page[UserOut]:
    items, total = await runtime.users.list(principal, limit=paging.limit, offset=paging.offset)
    return Page[UserOut].of([_out(m) for m in items], total, paging)


@router.post(
    "",
    status_code=status.HTTP_410_GONE,
    summary="Gone: invite people with POST /api/v1/invitations",
    responses={410: {"model": ErrorResponse}},
)
async def create_user(principal: PrincipalDep) -> None:
    # No admin sets a password or attaches an identity: people accept invitations themselves.
    principal.require_tenant_admin()
    raise Gone(
        "Users are no longer added with a password: invite them with POST /api/v1/invitations "
        "{email, role}; they accept with the invitation's token and choose their own password.",
        code="use_invitations",
    )


@router.get("/{user_id}", response_model=UserOut)
async def get_user(user_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep) -> UserOut:
    return _out(await runtime.users.get(principal, user_id))


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, principal: PrincipalDep, runtime: RuntimeDep
) -> UserOut:
    return _out(await runtime.users.set_role(principal, user_id, body.role))


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_user(
    user_id: uuid.UUID,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    keep_keys: Annotated[
        bool,
        Query(description="Keep the API keys this user created here (default: revoke them)."),
    ] = False,
) -> None:
    await runtime.users.remove(principal, user_id, keep_keys=keep_keys)


@router.post(
    "/{user_id}/sign-out",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End every session of a member (they log in again)",
)
async def sign_out_user(user_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep) -> None:
    await runtime.users.sign_out(principal, user_id)


identities_router = APIRouter(prefix="/api/v1/admin/identities", tags=["admin"])


@identities_router.post(
    "/disable",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Platform admins: disable an identity in every tenant and end its sessions",
)
async def disable_identity(body: IdentityRef, principal: PrincipalDep, runtime: RuntimeDep) -> None:
    await runtime.users.set_active(principal, body.email, active=False)


@identities_router.post(
    "/enable",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Platform admins: enable a disabled identity again",
)
async def enable_identity(body: IdentityRef, principal: PrincipalDep, runtime: RuntimeDep) -> None:
    await runtime.users.set_active(principal, body.email, active=True)
