"""The platform's model catalog, for platform administrators."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, status

from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.schemas import ResponseModel
from mtai.services.catalog import ModelDefinition, ModelSpec

router = APIRouter(prefix="/api/v1/admin/models", tags=["admin"])


class CatalogModelOut(ResponseModel):
    name: str
    provider: str
    upstream_model: str
    base_url: str | None
    region: str | None
    has_api_key: bool
    context_window: int
    max_output_tokens: int
    input_price_per_1m: Decimal
    output_price_per_1m: Decimal
    timeout_seconds: float
    max_retries: int
    fallbacks: list[str]
    enabled: bool
    cached_input_price_per_1m: Decimal | None
    cache_write_price_per_1m: Decimal | None
    capabilities: dict[str, bool]  # the flags as set; absent ones are True
    drop_params: bool


def _out(spec: ModelSpec) -> CatalogModelOut:
    return CatalogModelOut(
        **{
            k: getattr(spec, k)
            for k in CatalogModelOut.model_fields
            if k not in ("has_api_key", "fallbacks", "capabilities")
        },
        has_api_key=spec.api_key is not None,
        fallbacks=list(spec.fallbacks),
        capabilities=dict(spec.capabilities),
    )


@router.get("", response_model=list[CatalogModelOut])
async def list_models(principal: PrincipalDep, runtime: RuntimeDep) -> list[CatalogModelOut]:
    principal.require_platform_admin()
    return [_out(s) for s in (await runtime.catalog.models()).values()]


@router.put("/{name}", response_model=CatalogModelOut)
async def put_model(
    name: str, body: ModelDefinition, principal: PrincipalDep, runtime: RuntimeDep
) -> CatalogModelOut:
    """Create or replace a model (the body's name must match the path)."""
    spec = await runtime.catalog.put_model(principal, body.model_copy(update={"name": name}))
    return _out(spec)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_model(name: str, principal: PrincipalDep, runtime: RuntimeDep) -> None:
    await runtime.catalog.delete_model(principal, name)
