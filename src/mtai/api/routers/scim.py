"""SCIM 2.0 (RFC 7644) for a tenant's identity provider (Okta, Entra ID, ...), at /scim/v2.

The tenant comes from the bearer token alone. Errors take SCIM's error shape, rendered by this
router's route class rather than by the global handlers; what fails before a route runs (an
unknown path or method, a body over the size limit) gets the same shape from api/errors.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from scim2_models import (
    Context,
    InvalidSyntaxException,
    InvalidValueException,
    NotImplementedException,
    SCIMException,
)

from mtai.api.deps import RuntimeDep
from mtai.api.errors import scim_error_body
from mtai.services.scim import Reply

SCIM_JSON = "application/scim+json"
JSON_TYPES = (SCIM_JSON, "application/json")
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class UnsupportedMediaType(SCIMException):
    status = 415
    _default_detail = "Send the body as application/scim+json."


def error_response(exc: SCIMException) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(
        scim_error_body(exc.status, exc.detail, exc.scim_type or None),
        status_code=exc.status,
        media_type=SCIM_JSON,
        headers=headers,
    )


class ScimRoute(APIRoute):
    """A route that answers SCIM errors in SCIM's shape."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def scim_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SCIMException as exc:
                return error_response(exc)

        return scim_handler


router = APIRouter(prefix="/scim/v2", tags=["scim"], route_class=ScimRoute)


async def tenant_of(request: Request, runtime: RuntimeDep) -> uuid.UUID:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    tenant_id = await runtime.scim.authenticate(
        token.strip() if scheme.lower() == "bearer" else None
    )
    structlog.contextvars.bind_contextvars(tenant_id=str(tenant_id))
    return tenant_id


TenantDep = Annotated[uuid.UUID, Depends(tenant_of)]
# Discovery is the same for every tenant, but only a tenant's provider reads it.
AUTHENTICATED = [Depends(tenant_of)]


def base_url(request: Request, runtime: RuntimeDep) -> str:
    """Where this SCIM service is reached: resource locations and references start here."""
    root = runtime.settings.public_url or str(request.base_url)
    return f"{root.rstrip('/')}/scim/v2"


BaseDep = Annotated[str, Depends(base_url)]


def _has_nul(value: Any) -> bool:
    # A loop, not recursion: a body may nest as deep as the JSON parser allows.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def query_of(request: Request) -> dict[str, str]:
    query = dict(request.query_params)
    if _has_nul(query):
        raise InvalidValueException(detail="Query parameters cannot hold NUL characters.")
    return query


QueryDep = Annotated[dict[str, str], Depends(query_of)]


async def body_of(request: Request) -> dict[str, Any]:
    """The request's JSON object (the middleware has already bounded its size)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type not in JSON_TYPES:
        raise UnsupportedMediaType()
    try:
        payload = json.loads(await request.body())
    except (ValueError, RecursionError):
        raise InvalidSyntaxException(detail="The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail="The body must be a JSON object.")
    # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database.
    if _has_nul(payload):
        raise InvalidValueException(detail="Values cannot hold NUL characters.")
    return payload


BodyDep = Annotated[dict[str, Any], Depends(body_of)]


def reply(answer: Reply, status_code: int = status.HTTP_200_OK) -> JSONResponse:
    headers = {"ETag": answer.etag} if answer.etag else {}
    if status_code == status.HTTP_201_CREATED and answer.location:
        headers["Location"] = answer.location
    return JSONResponse(answer.body, status_code=status_code, media_type=SCIM_JSON, headers=headers)


def read(answer: Reply, request: Request) -> Response:
    """A resource, or 304 when the caller already holds this version (If-None-Match)."""
    held = request.headers.get("if-none-match")
    if held and answer.etag and answer.etag in {tag.strip() for tag in held.split(",")}:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": answer.etag})
    return reply(answer)


# Discovery


@router.get("/ServiceProviderConfig", dependencies=AUTHENTICATED)
async def service_provider_config(runtime: RuntimeDep, base: BaseDep) -> Response:
    return reply(runtime.scim.service_provider_config(base))


@router.get("/ResourceTypes", dependencies=AUTHENTICATED)
async def resource_types(runtime: RuntimeDep, base: BaseDep) -> Response:
    return reply(runtime.scim.resource_types(base))


@router.get("/ResourceTypes/{name}", dependencies=AUTHENTICATED)
async def resource_type(name: str, runtime: RuntimeDep, base: BaseDep) -> Response:
    return reply(runtime.scim.resource_type(base, name))


@router.get("/Schemas", dependencies=AUTHENTICATED)
async def schemas(runtime: RuntimeDep, base: BaseDep) -> Response:
    return reply(runtime.scim.schemas(base))


@router.get("/Schemas/{urn}", dependencies=AUTHENTICATED)
async def schema(urn: str, runtime: RuntimeDep, base: BaseDep) -> Response:
    return reply(runtime.scim.schema(base, urn))


@router.post("/.search", dependencies=AUTHENTICATED)
async def search_everything() -> Response:
    # RFC 7644 §3.4.3 makes a query across resource types optional; providers query
    # /Users and /Groups.
    raise NotImplementedException(detail="Search /Users/.search or /Groups/.search instead.")


# Users


@router.get("/Users")
async def list_users(
    tenant_id: TenantDep, runtime: RuntimeDep, base: BaseDep, query: QueryDep
) -> Response:
    return reply(await runtime.scim.list_users(tenant_id, base, query))


@router.post("/Users/.search")
async def search_users(
    tenant_id: TenantDep, runtime: RuntimeDep, base: BaseDep, body: BodyDep
) -> Response:
    return reply(await runtime.scim.list_users(tenant_id, base, body, Context.SEARCH_REQUEST))


@router.post("/Users")
async def create_user(
    tenant_id: TenantDep, runtime: RuntimeDep, base: BaseDep, body: BodyDep, query: QueryDep
) -> Response:
    answer = await runtime.scim.create_user(tenant_id, base, body, query)
    return reply(answer, status.HTTP_201_CREATED)


@router.get("/Users/{scim_id}")
async def get_user(
    scim_id: str,
    request: Request,
    tenant_id: TenantDep,
    runtime: RuntimeDep,
    base: BaseDep,
    query: QueryDep,
) -> Response:
    return read(await runtime.scim.get_user(tenant_id, base, scim_id, query), request)


@router.put("/Users/{scim_id}")
async def replace_user(
    scim_id: str,
    request: Request,
    tenant_id: TenantDep,
    runtime: RuntimeDep,
    base: BaseDep,
    body: BodyDep,
    query: QueryDep,
) -> Response:
    if_match = request.headers.get("if-match")
    return reply(await runtime.scim.replace_user(tenant_id, base, scim_id, body, query, if_match))


@router.patch("/Users/{scim_id}")
async def patch_user(
    scim_id: str,
    request: Request,
    tenant_id: TenantDep,
    runtime: RuntimeDep,
    base: BaseDep,
    body: BodyDep,
    query: QueryDep,
) -> Response:
    if_match = request.headers.get("if-match")
    return reply(await runtime.scim.patch_user(tenant_id, base, scim_id, body, query, if_match))


@router.delete("/Users/{scim_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(
    scim_id: str, request: Request, tenant_id: TenantDep, runtime: RuntimeDep
) -> Response:
    await runtime.scim.delete_user(tenant_id, scim_id, request.headers.get("if-match"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Groups


@router.get("/Groups")
async def list_groups(
    tenant_id: TenantDep, runtime: RuntimeDep, base: BaseDep, query: QueryDep
) -> Response:
    return reply(await runtime.scim.list_groups(tenant_id, base, query))


@router.post("/Groups/.search")
async def search_groups(
    tenant_id: TenantDep, runtime: RuntimeDep, base: BaseDep, body: BodyDep
) -> Response:
    return reply(await runtime.scim.list_groups(tenant_id, base, body, Context.SEARCH_REQUEST))


@router.post("/Groups")
async def create_group(
    tenant_id: TenantDep, runtime: RuntimeDep, base: BaseDep, body: BodyDep, query: QueryDep
) -> Response:
    answer = await runtime.scim.create_group(tenant_id, base, body, query)
    return reply(answer, status.HTTP_201_CREATED)


@router.get("/Groups/{scim_id}")
async def get_group(
    scim_id: str,
    request: Request,
    tenant_id: TenantDep,
    runtime: RuntimeDep,
    base: BaseDep,
    query: QueryDep,
) -> Response:
    return read(await runtime.scim.get_group(tenant_id, base, scim_id, query), request)


@router.put("/Groups/{scim_id}")
async def replace_group(
    scim_id: str,
    request: Request,
    tenant_id: TenantDep,
    runtime: RuntimeDep,
    base: BaseDep,
    body: BodyDep,
    query: QueryDep,
) -> Response:
    if_match = request.headers.get("if-match")
    return reply(await runtime.scim.replace_group(tenant_id, base, scim_id, body, query, if_match))


@router.patch("/Groups/{scim_id}")
async def patch_group(
    scim_id: str,
    request: Request,
    tenant_id: TenantDep,
    runtime: RuntimeDep,
    base: BaseDep,
    body: BodyDep,
    query: QueryDep,
) -> Response:
    if_match = request.headers.get("if-match")
    return reply(await runtime.scim.patch_group(tenant_id, base, scim_id, body, query, if_match))


@router.delete("/Groups/{scim_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_group(
    scim_id: str, request: Request, tenant_id: TenantDep, runtime: RuntimeDep
) -> Response:
    await runtime.scim.delete_group(tenant_id, scim_id, request.headers.get("if-match"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
