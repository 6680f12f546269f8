"""Single sign-on: the browser's round trip through the tenant's identity provider, and the
tenant's provider settings.

The browser flow: `GET /api/v1/auth/sso/start` (sets the flow cookie, redirects to the
provider), the provider redirects to `GET /api/v1/auth/sso/callback`, which admits the person
and redirects to `/ui/sso` with a sealed hand-off cookie; the web UI trades it at
`POST /api/v1/auth/sso/exchange` for a session, or for the error that ended the sign-in (never
in the URL: a message there could be written by anyone).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Cookie, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import Field

from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.api.errors import error_response
from mtai.api.routers.auth import LoginResponse, client_address, guarded, login_response
from mtai.api.schemas import Email, ResponseModel, StrictModel
from mtai.db.models import SsoProvider
from mtai.errors import AppError
from mtai.logging import get_logger
from mtai.runtime import Runtime
from mtai.services import tokens
from mtai.services.principal import Role
from mtai.services.sso import SignedIn
from mtai.services.sso_settings import ProviderInput

router = APIRouter(tags=["sso"])
log = get_logger(__name__)
FLOW_COOKIE = "mtai_sso_flow"
HANDOFF_COOKIE = "mtai_sso_handoff"
AUTH_PATH = "/api/v1/auth/sso"
CALLBACK_PATH = f"{AUTH_PATH}/callback"
EXCHANGE_PATH = f"{AUTH_PATH}/exchange"
UI_PAGE = "/ui/sso"


def _base_url(runtime: Runtime, request: Request) -> str:
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def _secure(runtime: Runtime, request: Request) -> bool:
    return _base_url(runtime, request).startswith("https://")


def _to_ui(runtime: Runtime, request: Request, outcome: SignedIn | AppError) -> RedirectResponse:
    response = RedirectResponse(
        f"{_base_url(runtime, request)}{UI_PAGE}", status.HTTP_303_SEE_OTHER
    )
    response.set_cookie(
        HANDOFF_COOKIE,
        runtime.sso.handoff(outcome),
        max_age=runtime.sso.handoff_seconds,
        path=EXCHANGE_PATH,
        httponly=True,
        secure=_secure(runtime, request),
        samesite="lax",
    )
    return response


def _set_flow(response: Response, runtime: Runtime, request: Request, value: str) -> None:
    # Lax: the provider's redirect back is a top-level GET from another site, which Lax allows.
    response.set_cookie(
        FLOW_COOKIE,
        value,
        max_age=runtime.settings.sso_flow_seconds,
        path=AUTH_PATH,
        httponly=True,
        secure=_secure(runtime, request),
        samesite="lax",
    )


@router.get(
    f"{AUTH_PATH}/start",
    summary="Begin single sign-on (a browser navigation: redirects to the identity provider)",
    status_code=status.HTTP_303_SEE_OTHER,
)
async def start(
    runtime: RuntimeDep,
    request: Request,
    tenant: Annotated[str | None, Query(max_length=100, description="Tenant slug or id.")] = None,
    email: Annotated[
        str | None, Query(max_length=320, description="Or a work email: its verified domain.")
    ] = None,
) -> RedirectResponse:
    try:
        started = await runtime.sso.begin(
            tenant_ref=tenant,
            email=email,
            redirect_uri=_base_url(runtime, request) + CALLBACK_PATH,
        )
    except AppError as exc:
        return _to_ui(runtime, request, exc)
    response = RedirectResponse(started.authorization_url, status.HTTP_303_SEE_OTHER)
    _set_flow(response, runtime, request, started.flow_cookie)
    return response


class LinkRequest(StrictModel):
    tenant: str = Field(min_length=1, max_length=100, description="Tenant slug or id.")


class LinkStarted(ResponseModel):
    authorization_url: str


@router.post(
    f"{AUTH_PATH}/link",
    response_model=LinkStarted,
    summary="Link your signed-in account to a tenant's identity provider (then open the URL)",
)
async def link(
    body: LinkRequest,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
) -> LinkStarted:
    started = await runtime.sso.begin(
        tenant_ref=body.tenant,
        email=None,
        redirect_uri=_base_url(runtime, request) + CALLBACK_PATH,
        link_user=runtime.sso.linking_user(principal),
    )
    _set_flow(response, runtime, request, started.flow_cookie)
    return LinkStarted(authorization_url=started.authorization_url)


class PasswordLinkRequest(StrictModel):
    tenant: str = Field(min_length=1, max_length=100, description="Tenant slug or id.")
    email: Email
    password: str = Field(min_length=1, max_length=256)


@router.post(
    f"{AUTH_PATH}/link-password",
    response_model=LinkStarted,
    summary="Link your account to a tenant's identity provider, proving it with your password "
    "(for a tenant that already requires SSO, where a password session is refused)",
)
async def link_with_password(
    body: PasswordLinkRequest, runtime: RuntimeDep, request: Request, response: Response
) -> LinkStarted:
    user = await guarded(
        runtime,
        body.email,
        client_address(request),
        lambda: runtime.auth.check_password(body.email, body.password),
    )
    started = await runtime.sso.begin(
        tenant_ref=body.tenant,
        email=None,
        redirect_uri=_base_url(runtime, request) + CALLBACK_PATH,
        link_user=user.id,
    )
    _set_flow(response, runtime, request, started.flow_cookie)
    return LinkStarted(authorization_url=started.authorization_url)


@router.get(
    CALLBACK_PATH,
    summary="Where the identity provider sends the browser back (register this redirect URI)",
    status_code=status.HTTP_303_SEE_OTHER,
)
async def callback(
    runtime: RuntimeDep,
    request: Request,
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    flow: Annotated[str | None, Cookie(alias=FLOW_COOKIE)] = None,
) -> RedirectResponse:
    outcome: SignedIn | AppError
    try:
        outcome = await runtime.sso.finish(flow, state=state, code=code, error=error)
    except AppError as exc:
        outcome = exc
    except Exception:  # a bug must not leave the person on a bare 500 page
        log.exception("sso.callback_failed")
        outcome = AppError(
            "Single sign-on failed on our side; try again, and tell your administrator if it "
            "happens again.",
            code="sso_failed",
        )
    response = _to_ui(runtime, request, outcome)
    # A flow is used once, whatever its outcome.
    response.delete_cookie(FLOW_COOKIE, path=AUTH_PATH)
    return response


@router.post(
    f"{AUTH_PATH}/exchange",
    response_model=LoginResponse,
    summary="Trade the hand-off cookie of a finished sign-on for a session, or its error (web UI)",
)
async def exchange(
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    handoff: Annotated[str | None, Cookie(alias=HANDOFF_COOKIE)] = None,
) -> LoginResponse | JSONResponse:
    try:
        signed_in = await runtime.sso.redeem(handoff)
        result = await runtime.auth.start_session(
            signed_in.user_id, signed_in.tenant_id, method=tokens.SSO
        )
    except AppError as exc:
        failed = error_response(request, exc.status_code, exc.detail, exc.code)
        failed.delete_cookie(HANDOFF_COOKIE, path=EXCHANGE_PATH)  # shown once, like a session
        return failed
    response.delete_cookie(HANDOFF_COOKIE, path=EXCHANGE_PATH)
    return login_response(result)


# -- the tenant's provider ------------------------------------------------------------------


class ProviderIn(StrictModel):
    issuer: str = Field(
        min_length=8, max_length=500, description="e.g. https://login.example.com/oauth2/default"
    )
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: str | None = Field(
        default=None,
        max_length=2000,
        description="Stored encrypted, never shown again; omit to keep the stored one.",
    )
    scopes: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=lambda: ["openid", "email", "profile"], max_length=20
    )
    allowed_domains: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list,
        max_length=100,
        description="Email domains that may sign in (empty: any the provider vouches for).",
    )
    groups_claim: str | None = Field(
        default=None, max_length=100, description="ID token claim listing groups, e.g. groups."
    )
    group_roles: dict[Annotated[str, Field(max_length=255)], Role] = Field(
        default_factory=dict, description="Group name -> owner, admin or member."
    )
    jit_provisioning: bool = Field(
        default=False, description="Admit people of verified domains without an invitation."
    )
    enforce_sso: bool = Field(
        default=False,
        description="Members must sign in through the provider; owners keep a password "
        "(break-glass, audited).",
    )
    enabled: bool = True


class ProviderOut(ResponseModel):
    issuer: str
    client_id: str
    has_client_secret: bool
    scopes: list[str]
    allowed_domains: list[str]
    verified_domains: list[str]
    groups_claim: str | None
    group_roles: dict[str, Role]
    jit_provisioning: bool
    enforce_sso: bool
    enabled: bool
    has_scim_token: bool
    redirect_uri: str
    scim_base_url: str
    updated_at: datetime


def _out(provider: SsoProvider, runtime: Runtime, request: Request) -> ProviderOut:
    base = _base_url(runtime, request)
    return ProviderOut(
        issuer=provider.issuer,
        client_id=provider.client_id,
        has_client_secret=provider.client_secret_encrypted is not None,
        scopes=list(provider.scopes),
        allowed_domains=list(provider.allowed_domains),
        verified_domains=list(provider.verified_domains),
        groups_claim=provider.groups_claim,
        group_roles={g: Role(r) for g, r in provider.group_roles.items()},
        jit_provisioning=provider.jit_provisioning,
        enforce_sso=provider.enforce_sso,
        enabled=provider.enabled,
        has_scim_token=provider.scim_token_hash is not None,
        redirect_uri=base + CALLBACK_PATH,
        scim_base_url=base + "/scim/v2",
        updated_at=provider.updated_at,
    )


@router.get("/api/v1/sso", response_model=ProviderOut, summary="The tenant's identity provider")
async def get_provider(
    principal: PrincipalDep, runtime: RuntimeDep, request: Request
) -> ProviderOut:
    return _out(await runtime.sso_settings.get(principal), runtime, request)


@router.put(
    "/api/v1/sso",
    response_model=ProviderOut,
    summary="Register or change the tenant's identity provider (its discovery is checked)",
)
async def put_provider(
    body: ProviderIn, principal: PrincipalDep, runtime: RuntimeDep, request: Request
) -> ProviderOut:
    provider = await runtime.sso_settings.configure(
        principal,
        ProviderInput(
            issuer=body.issuer,
            client_id=body.client_id,
            client_secret=body.client_secret,
            scopes=body.scopes,
            allowed_domains=body.allowed_domains,
            groups_claim=body.groups_claim,
            group_roles={g: r.value for g, r in body.group_roles.items()},
            jit_provisioning=body.jit_provisioning,
            enforce_sso=body.enforce_sso,
            enabled=body.enabled,
        ),
    )
    return _out(provider, runtime, request)


@router.delete("/api/v1/sso", status_code=status.HTTP_204_NO_CONTENT, summary="Remove the provider")
async def delete_provider(principal: PrincipalDep, runtime: RuntimeDep) -> None:
    await runtime.sso_settings.remove(principal)


class DomainVerification(StrictModel):
    verified: bool


@router.put(
    "/api/v1/sso/domains/{domain}",
    response_model=ProviderOut,
    summary="Platform administrators: vouch that the tenant (X-Tenant-ID) owns a domain",
)
async def verify_domain(
    domain: Annotated[str, Path(max_length=253)],
    body: DomainVerification,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    request: Request,
) -> ProviderOut:
    provider = await runtime.sso_settings.set_domain_verified(
        principal, domain, verified=body.verified
    )
    return _out(provider, runtime, request)


class ScimToken(ResponseModel):
    token: str
    scim_base_url: str


@router.post(
    "/api/v1/sso/scim-token",
    response_model=ScimToken,
    status_code=status.HTTP_201_CREATED,
    summary="A new SCIM bearer token (shown once; the previous one stops working)",
)
async def new_scim_token(
    principal: PrincipalDep, runtime: RuntimeDep, request: Request
) -> ScimToken:
    token = await runtime.sso_settings.issue_scim_token(principal)
    return ScimToken(token=token, scim_base_url=_base_url(runtime, request) + "/scim/v2")


@router.delete(
    "/api/v1/sso/scim-token",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke the SCIM token",
)
async def revoke_scim_token(principal: PrincipalDep, runtime: RuntimeDep) -> None:
    await runtime.sso_settings.revoke_scim_token(principal)
