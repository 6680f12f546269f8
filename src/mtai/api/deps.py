"""FastAPI dependencies: the runtime, and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Header, Query, Request

from mtai.errors import Unauthorized
from mtai.runtime import Runtime
from mtai.services.principal import Principal


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _credential(authorization: str | None, api_key: str | None) -> str:
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("Authorization header must be 'Bearer <token or API key>'.")
    if api_key and api_key.strip():
        return api_key.strip()
    raise Unauthorized(
        "Authentication required: send 'Authorization: Bearer <token or API key>' "
        "or 'X-API-Key: <key>'."
    )


async def get_principal(
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
    x_tenant_id: Annotated[str | None, Header()] = None,
) -> Principal:
    principal = await runtime.auth.authenticate(_credential(authorization, x_api_key), x_tenant_id)
    if principal.tenant_id is not None:
        structlog.contextvars.bind_contextvars(tenant_id=str(principal.tenant_id))
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


class Paging:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


PagingDep = Annotated[Paging, Depends()]
