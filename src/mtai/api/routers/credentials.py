"""A tenant's own provider keys (bring your own key), encrypted at rest, never shown again."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, status
from pydantic import Field

from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.schemas import ResponseModel, StrictModel

router = APIRouter(prefix="/api/v1/provider-credentials", tags=["provider credentials"])
Provider = Literal["openai", "anthropic", "bedrock"]


class CredentialIn(StrictModel):
    api_key: str = Field(
        min_length=1, max_length=4000, description="For bedrock: ACCESS_KEY:SECRET."
    )
    base_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")


class CredentialOut(ResponseModel):
    provider: str
    base_url: str | None


@router.get("", response_model=list[CredentialOut])
async def list_credentials(principal: PrincipalDep, runtime: RuntimeDep) -> list[CredentialOut]:
    return [
        CredentialOut(provider=p, base_url=u)
        for p, u in await runtime.catalog.list_credentials(principal)
    ]


@router.put("/{provider}", response_model=CredentialOut)
async def put_credential(
    provider: Provider, body: CredentialIn, principal: PrincipalDep, runtime: RuntimeDep
) -> CredentialOut:
    await runtime.catalog.set_credential(principal, provider, body.api_key, body.base_url)
    return CredentialOut(provider=provider, base_url=body.base_url)


@router.delete("/{provider}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_credential(
    provider: Provider, principal: PrincipalDep, runtime: RuntimeDep
) -> None:
    await runtime.catalog.remove_credential(principal, provider)
