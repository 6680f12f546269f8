"""API keys of the caller's tenant."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, status
from pydantic import AwareDatetime, Field

from mtai.api.deps import PagingDep, PrincipalDep, RuntimeDep
from mtai.api.schemas import Page, ResponseModel, StrictModel
from mtai.services.principal import Scope

router = APIRouter(prefix="/api/v1/keys", tags=["api keys"])


class KeyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1, max_length=8, examples=[["chat", "rag:read"]])
    expires_at: AwareDatetime | None = Field(default=None, description="ISO 8601 with time zone.")


class KeyRotate(StrictModel):
    grace_seconds: int | None = Field(
        default=None,
        ge=0,
        le=30 * 86400,
        description="Seconds the old key keeps working (default MTAI_KEY_ROTATION_GRACE_SECONDS).",
    )


class KeyOut(ResponseModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from: uuid.UUID | None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret key. Shown only now: store it safely.")


@router.post("", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
async def create_key(body: KeyCreate, principal: PrincipalDep, runtime: RuntimeDep) -> KeyCreated:
    key, plaintext = await runtime.keys.create(
        principal, name=body.name, scopes=body.scopes, expires_at=body.expires_at
    )
    return KeyCreated(**KeyOut.model_validate(key).model_dump(), key=plaintext)


@router.get("", response_model=Page[KeyOut])
async def list_keys(
    principal: PrincipalDep, runtime: RuntimeDep, paging: PagingDep
) -> Page[KeyOut]:
    items, total = await runtime.keys.list(principal, limit=paging.limit, offset=paging.offset)
    return Page[KeyOut].of([KeyOut.model_validate(k) for k in items], total, paging)


@router.get("/{key_id}", response_model=KeyOut)
async def get_key(key_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep) -> KeyOut:
    return KeyOut.model_validate(await runtime.keys.get(principal, key_id))


@router.post("/{key_id}/revoke", response_model=KeyOut)
async def revoke_key(key_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep) -> KeyOut:
    return KeyOut.model_validate(await runtime.keys.revoke(principal, key_id))


@router.delete(
    "/{key_id}", response_model=KeyOut, summary="Revoke (the record stays for the audit trail)"
)
async def delete_key(key_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep) -> KeyOut:
    return KeyOut.model_validate(await runtime.keys.revoke(principal, key_id))


@router.post("/{key_id}/rotate", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
async def rotate_key(
    key_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep, body: KeyRotate | None = None
) -> KeyCreated:
    key, plaintext = await runtime.keys.rotate(
        principal, key_id, grace_seconds=body.grace_seconds if body else None
    )
    return KeyCreated(**KeyOut.model_validate(key).model_dump(), key=plaintext)
