"""A tenant's users and their roles, for that tenant's admins."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, status
from pydantic import Field

from mtai.api.deps import PagingDep, PrincipalDep, RuntimeDep
from mtai.api.schemas import Email, Page, ResponseModel, StrictModel
from mtai.services.principal import Role
from mtai.services.users import Member

router = APIRouter(prefix="/api/v1/users", tags=["users"])


class UserCreate(StrictModel):
    email: Email
    password: str | None = Field(default=None, min_length=12, max_length=256)
    role: Role = Role.MEMBER
    display_name: str = Field(default="", max_length=200)


class UserUpdate(StrictModel):
    role: Role


class UserOut(ResponseModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: Role
    is_active: bool
    member_since: datetime


class UserCreated(UserOut):
    initial_password: str | None = Field(
        default=None, description="Shown once, when a new user was created without a password."
    )


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


@router.post("", response_model=UserCreated, status_code=status.HTTP_201_CREATED)
async def create_user(
    body: UserCreate, principal: PrincipalDep, runtime: RuntimeDep
) -> UserCreated:
    member, generated = await runtime.users.create(
        principal,
        email=body.email,
        password=body.password,
        role=body.role,
        display_name=body.display_name,
    )
    return UserCreated(**_out(member).model_dump(), initial_password=generated)


@router.get("/{user_id}", response_model=UserOut)
async def get_user(user_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep) -> UserOut:
    return _out(await runtime.users.get(principal, user_id))


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, principal: PrincipalDep, runtime: RuntimeDep
) -> UserOut:
    return _out(await runtime.users.set_role(principal, user_id, body.role))


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_user(user_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep) -> None:
    await runtime.users.remove(principal, user_id)
