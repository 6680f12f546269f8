"""Invitations: tenant admins invite an email with a role; the person accepts with the token."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, status
from pydantic import Field

from mtai.api.deps import PagingDep, PrincipalDep, RuntimeDep
from mtai.api.routers.auth import LoginResponse, login_response
from mtai.api.schemas import Email, Page, ResponseModel, StrictModel
from mtai.db.models import Invitation
from mtai.services.invitations import Issued
from mtai.services.principal import Role

router = APIRouter(prefix="/api/v1/invitations", tags=["invitations"])

Token = Annotated[str, Field(min_length=8, max_length=200, description="The invitation token.")]


class InvitationCreate(StrictModel):
    email: Email
    role: Role = Role.MEMBER


class InvitationIssued(ResponseModel):
    """The same shape and status whether or not an account with this email exists anywhere."""

    id: uuid.UUID
    email: str
    role: Role
    status: Literal["pending"] = "pending"
    expires_at: datetime
    token: str | None = Field(
        description="Shown once (only a hash is kept); null when it is delivered only by mail."
    )
    accept_url: str | None


class InvitationOut(ResponseModel):
    id: uuid.UUID
    email: str
    role: Role
    status: Literal["pending"] = "pending"
    created_at: datetime
    expires_at: datetime
    invited_by: uuid.UUID | None


class TokenBody(StrictModel):
    token: Token


class TenantBrief(ResponseModel):
    id: uuid.UUID
    slug: str
    name: str


class InvitationLookup(ResponseModel):
    email: str
    role: Role | None
    tenant: TenantBrief | None
    platform_admin: bool
    expires_at: datetime


class AcceptRequest(StrictModel):
    token: Token
    password: str | None = Field(
        default=None,
        max_length=256,
        description="A new account's password (12+ characters); omit when logged in.",
    )
    display_name: str = Field(default="", max_length=200)


def issued_out(runtime_shown: tuple[str | None, str | None], issued: Issued) -> InvitationIssued:
    token, url = runtime_shown
    invitation = issued.invitation
    return InvitationIssued(
        id=invitation.id,
        email=invitation.email,
        role=Role(invitation.role or Role.MEMBER),
        expires_at=invitation.expires_at,
        token=token,
        accept_url=url,
    )


def _out(invitation: Invitation) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        email=invitation.email,
        role=Role(invitation.role or Role.MEMBER),
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
        invited_by=invitation.invited_by,
    )


@router.post("", response_model=InvitationIssued, status_code=status.HTTP_201_CREATED)
async def create_invitation(
    body: InvitationCreate, principal: PrincipalDep, runtime: RuntimeDep
) -> InvitationIssued:
    issued = await runtime.invitations.invite(principal, email=body.email, role=body.role)
    return issued_out(runtime.invitations.shown(issued), issued)


@router.get("", response_model=Page[InvitationOut], summary="Pending invitations of the tenant")
async def list_invitations(
    principal: PrincipalDep, runtime: RuntimeDep, paging: PagingDep
) -> Page[InvitationOut]:
    items, total = await runtime.invitations.list_pending(
        principal, limit=paging.limit, offset=paging.offset
    )
    return Page[InvitationOut].of([_out(i) for i in items], total, paging)


@router.delete("/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_invitation(
    invitation_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> None:
    await runtime.invitations.revoke(principal, invitation_id)


@router.post(
    "/lookup", response_model=InvitationLookup, summary="What a token invites to (no login)"
)
async def lookup_invitation(body: TokenBody, runtime: RuntimeDep) -> InvitationLookup:
    invitation, tenant = await runtime.invitations.lookup(body.token)
    return InvitationLookup(
        email=invitation.email,
        role=Role(invitation.role) if invitation.role else None,
        tenant=TenantBrief(id=tenant.id, slug=tenant.slug, name=tenant.name) if tenant else None,
        platform_admin=invitation.platform_admin,
        expires_at=invitation.expires_at,
    )


@router.post(
    "/accept",
    response_model=LoginResponse,
    summary="Accept an invitation: a new account chooses its password, an existing one logs in",
)
async def accept_invitation(
    body: AcceptRequest,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
) -> LoginResponse:
    caller = None
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            caller = await runtime.auth.authenticate(credential.strip(), None)
    accepted = await runtime.invitations.accept(
        body.token, password=body.password, display_name=body.display_name, caller=caller
    )
    result = await runtime.auth.start_session(accepted.user_id, accepted.tenant_id)
    return login_response(result)
