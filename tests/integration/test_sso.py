"""Single sign-on per tenant against a real OpenID Connect provider on loopback.

The provider (tests/support/oidc_provider.py) signs real ID tokens, serves discovery and JWKS;
a person signs in by submitting their subject on its authorization page. The mtai app here
allows loopback issuers (MTAI_EGRESS_ALLOW_HOSTS), as an operator of a private deployment would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from typer.testing import CliRunner

from mtai import cli
from mtai.app import create_app
from mtai.config import Settings, get_settings
from mtai.db.repositories import sso as sso_repo
from mtai.providers.egress import EgressPolicy
from mtai.providers.oidc import ClientConfig, OidcClient, OidcError
from mtai.runtime import Runtime
from tests.conftest import (
    TenantFixture,
    deployment_env,
    invite,
    login,
    make_tenant,
)
from tests.support.oidc_provider import OidcProvider, running_provider

BASE = "http://mtai.test"


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with running_provider() as provider:
        yield provider


@pytest.fixture(scope="module")
def sso_settings(settings: Settings) -> Settings:
    """The suite's deployment (its database and secrets), allowing loopback issuers."""
    return settings.model_copy(
        update={"egress_allow_hosts": "127.0.0.1", "sso_jwks_refresh_seconds": 0}
    )


@pytest.fixture(scope="module")
async def sso_app(sso_settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(sso_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def browser(sso_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """One browser: its own cookie jar."""
    transport = httpx.ASGITransport(app=sso_app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


@pytest.fixture
def rt(sso_app: FastAPI) -> Runtime:
    runtime: Runtime = sso_app.state.runtime
    return runtime


@pytest.fixture
async def tenant(browser: httpx.AsyncClient, rt: Runtime) -> TenantFixture:
    return await make_tenant(browser, rt)


def new_browser(sso_app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sso_app), base_url=BASE)


async def configure(
    client: httpx.AsyncClient, owner: dict[str, str], idp: OidcProvider, **fields: Any
) -> dict[str, Any]:
    body = {"issuer": idp.issuer, "client_id": "mtai-test", "client_secret": "s3cret-value"}
    response = await client.put("/api/v1/sso", json={**body, **fields}, headers=owner)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def outcome(client: httpx.AsyncClient, landing: httpx.Response) -> dict[str, Any]:
    """Where the web UI lands, and what it gets for the hand-off: the LoginResponse, or
    {"error": code, "message": detail}. Nothing about the outcome is in the URL."""
    assert landing.status_code == 303, landing.text
    assert landing.headers["location"] == f"{BASE}/ui/sso"
    exchanged = await client.post("/api/v1/auth/sso/exchange")
    body: dict[str, Any] = exchanged.json()
    if exchanged.status_code == 200:
        return body
    assert exchanged.status_code in (401, 403), exchanged.text
    # The outcome is handed over once.
    assert (await client.post("/api/v1/auth/sso/exchange")).json()["code"] == (
        "sso_handoff_invalid"
    )
    return {"error": body["code"], "message": body["detail"]}


async def begin(client: httpx.AsyncClient, **params: str) -> str:
    start = await client.get("/api/v1/auth/sso/start", params=params)
    assert start.status_code == 303, start.text
    location = str(start.headers["location"])
    assert not location.startswith(f"{BASE}/ui/sso"), await outcome(client, start)
    return location


async def come_back(client: httpx.AsyncClient, redirect: str) -> dict[str, Any]:
    """Follow the provider's redirect into mtai; the outcome."""
    assert redirect.startswith(f"{BASE}/api/v1/auth/sso/callback?"), redirect
    response = await client.get(redirect)
    assert "mtai_sso_flow" not in client.cookies  # a flow is used once
    return await outcome(client, response)


async def sso(
    client: httpx.AsyncClient, idp: OidcProvider, sub: str, **params: str
) -> dict[str, Any]:
    """A whole sign-in; the LoginResponse, or {"error": ..., "message": ...}."""
    authorization_url = await begin(client, **params)
    redirect = await asyncio.to_thread(idp.sign_in, authorization_url, sub)
    return await come_back(client, redirect)


def user(idp: OidcProvider, email: str, **claims: Any) -> str:
    sub = f"sub-{secrets.token_hex(4)}"
    idp.set_user(sub, email=email, email_verified=True, name=email.split("@")[0], **claims)
    return sub


async def audit_actions(client: httpx.AsyncClient, owner: dict[str, str]) -> list[str]:
    page = (await client.get("/api/v1/admin/audit?limit=200", headers=owner)).json()
    return [e["action"] for e in page["items"]]


async def verify_domain(
    client: httpx.AsyncClient, rt: Runtime, tenant: TenantFixture, domain: str
) -> None:
    email, password = f"root-{secrets.token_hex(4)}@platform.example", secrets.token_urlsafe(16)
    activation = await rt.invitations.issue_platform_activation(email)
    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": activation.token, "password": password}
    )
    assert accepted.status_code == 200, accepted.text
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password, "platform": True}
    )
    token = response.json()["access_token"]
    verified = await client.put(
        f"/api/v1/sso/domains/{domain}",
        json={"verified": True},
        headers={"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant.slug},
    )
    assert verified.status_code == 200, verified.text


# -- configuration ---------------------------------------------------------------------------


async def test_configuration_is_admin_only_secret_never_shown_and_issuer_guarded(
    browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    assert (await browser.get("/api/v1/sso", headers=tenant.owner)).status_code == 404
    shown = await configure(browser, tenant.owner, idp)
    assert shown["has_client_secret"] is True
    assert "s3cret-value" not in str(shown)
    assert shown["redirect_uri"] == f"{BASE}/api/v1/auth/sso/callback"
    member_put = await browser.put(
        "/api/v1/sso", json={"issuer": idp.issuer, "client_id": "x"}, headers=tenant.member
    )
    assert member_put.status_code == 403
    # Keeping the secret: omitted means unchanged.
    again = await configure(browser, tenant.owner, idp, client_secret=None)
    assert again["has_client_secret"] is True
    for issuer, code in (
        ("http://169.254.169.254/latest", "issuer_refused"),  # metadata service: never
        ("http://10.1.2.3", "issuer_refused"),  # private, not allow-listed
        ("ftp://127.0.0.1", "issuer_refused"),
        (f"{idp.issuer}/nothing-here", "provider_unreachable"),
    ):
        refused = await browser.put(
            "/api/v1/sso", json={"issuer": issuer, "client_id": "x"}, headers=tenant.owner
        )
        assert refused.status_code == 422, (issuer, refused.text)
        assert refused.json()["code"] == code, refused.json()
    assert "sso.configure" in await audit_actions(browser, tenant.owner)


async def test_unknown_tenant_or_no_provider_lands_on_the_ui_with_a_reason(
    browser: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    for params in ({"tenant": "no-such-tenant"}, {"tenant": tenant.slug}, {"email": "a@b.c"}):
        start = await browser.get("/api/v1/auth/sso/start", params=params)
        assert (await outcome(browser, start))["error"] == "sso_not_configured"


# -- who may come in -------------------------------------------------------------------------


async def test_invited_person_signs_in_and_is_bound_to_the_subject(
    browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp)
    email = f"carol-{secrets.token_hex(3)}@corp.example"
    await invite(browser, tenant.owner, email, "admin")
    sub = user(idp, email)
    signed = await sso(browser, idp, sub, tenant=tenant.slug)
    assert signed["user"]["email"] == email
    assert signed["user"]["tenant"]["slug"] == tenant.slug
    assert signed["user"]["tenant"]["role"] == "admin"
    headers = {"Authorization": f"Bearer {signed['access_token']}"}
    me = await browser.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["email"] == email
    # The binding, not the email, finds them next time: the provider may change the email.
    idp.set_user(sub, email=email.replace("carol", "caroline"), email_verified=True)
    again = await sso(browser, idp, sub, tenant=tenant.slug)
    assert again["user"]["id"] == signed["user"]["id"]
    # The hand-off is used once.
    assert (await browser.post("/api/v1/auth/sso/exchange")).status_code == 401
    # Errors are not taken from the URL: a link cannot write a message onto our page.
    assert (await browser.get("/ui/sso?error=x&message=Call+us")).status_code == 200
    assert (await browser.post("/api/v1/auth/sso/exchange")).json()["code"] == (
        "sso_handoff_invalid"
    )
    # An SSO identity has no password to guess.
    refused = await browser.post("/api/v1/auth/login", json={"email": email, "password": "x" * 12})
    assert refused.status_code == 401
    actions = await audit_actions(browser, tenant.owner)
    assert {"sso.provision", "sso.login"} <= set(actions)


async def test_without_invitation_refused_then_jit_for_verified_domains_with_group_roles(
    browser: httpx.AsyncClient, rt: Runtime, tenant: TenantFixture, idp: OidcProvider
) -> None:
    domain = f"jit-{secrets.token_hex(3)}.example"
    await configure(
        browser,
        tenant.owner,
        idp,
        allowed_domains=[domain],
        jit_provisioning=True,
        groups_claim="groups",
        group_roles={"mtai-admins": "admin"},
    )
    sub = user(idp, f"dan@{domain}", groups=["mtai-admins", "staff"])
    # JIT is on, but the domain is not verified yet: an invitation is still needed.
    refused = await sso(browser, idp, sub, tenant=tenant.slug)
    assert refused["error"] == "sso_not_provisioned"
    await verify_domain(browser, rt, tenant, domain)
    signed = await sso(browser, idp, sub, email=f"someone@{domain}")  # routed by domain
    assert signed["user"]["tenant"]["slug"] == tenant.slug
    assert signed["user"]["tenant"]["role"] == "admin"
    # Groups are applied at every sign-in: out of the admins group, back to member.
    idp.set_user(sub, email=f"dan@{domain}", email_verified=True, groups=["staff"])
    demoted = await sso(browser, idp, sub, tenant=tenant.slug)
    assert demoted["user"]["tenant"]["role"] == "member"
    # A provider's email may not claim to be unverified.
    unverified = f"sub-{secrets.token_hex(4)}"
    idp.set_user(unverified, email=f"eve@{domain}", email_verified=False)
    assert (await sso(browser, idp, unverified, tenant=tenant.slug))["error"] == (
        "sso_email_unverified"
    )


async def test_a_domain_not_allowed_is_refused(
    browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp, allowed_domains=["corp.example"])
    email = f"mallory-{secrets.token_hex(3)}@evil.example"
    await invite(browser, tenant.owner, email)  # even an invitation does not override it
    denied = await sso(browser, idp, user(idp, email), tenant=tenant.slug)
    assert denied["error"] == "sso_domain_denied"
    assert "sso.denied" in await audit_actions(browser, tenant.owner)


async def test_an_existing_identity_is_never_taken_over_by_email_only_linked(
    sso_app: FastAPI,
    browser: httpx.AsyncClient,
    rt: Runtime,
    tenant: TenantFixture,
    idp: OidcProvider,
) -> None:
    other = await make_tenant(browser, rt)
    await configure(browser, tenant.owner, idp)
    # The tenant's provider vouches for an email that belongs to another tenant's owner.
    victim = other.owner_email
    await invite(browser, tenant.owner, victim)
    sub = user(idp, victim)
    refused = await sso(browser, idp, sub, tenant=tenant.slug)
    assert refused["error"] == "sso_not_provisioned"
    # The owner of the identity consents: signed in as themselves, they link the provider.
    token = await login(browser, victim, other.owner_password)
    async with new_browser(sso_app) as theirs:
        started = await theirs.post(
            "/api/v1/auth/sso/link",
            json={"tenant": tenant.slug},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert started.status_code == 200, started.text
        redirect = await asyncio.to_thread(idp.sign_in, started.json()["authorization_url"], sub)
        linked = await come_back(theirs, redirect)
    assert linked["user"]["email"] == victim
    assert linked["user"]["tenant"]["slug"] == tenant.slug
    assert {t["slug"] for t in linked["user"]["tenants"]} == {tenant.slug, other.slug}
    # An API key cannot link.
    by_key = await browser.post(
        "/api/v1/auth/sso/link", json={"tenant": tenant.slug}, headers=tenant.api_key
    )
    assert by_key.status_code == 403


# -- the protocol's checks -------------------------------------------------------------------


async def test_forged_or_foreign_state_is_refused(
    sso_app: FastAPI, browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp)
    email = f"frank-{secrets.token_hex(3)}@corp.example"
    await invite(browser, tenant.owner, email)
    sub = user(idp, email)
    redirect = await asyncio.to_thread(idp.sign_in, await begin(browser, tenant=tenant.slug), sub)
    forged = redirect.replace("state=", "state=x")
    assert (await come_back(browser, forged))["error"] == "sso_state_mismatch"
    # The attacker's own completed redirect, replayed into a victim's browser with no flow.
    redirect = await asyncio.to_thread(idp.sign_in, await begin(browser, tenant=tenant.slug), sub)
    async with new_browser(sso_app) as victim:
        assert (await come_back(victim, redirect))["error"] == "sso_state_invalid"
    # The provider refusing (the person pressed "deny").
    denied = await asyncio.to_thread(idp.deny, await begin(browser, tenant=tenant.slug))
    assert (await come_back(browser, denied))["error"] == "sso_denied"


async def test_wrong_nonce_is_refused(
    browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp)
    email = f"grace-{secrets.token_hex(3)}@corp.example"
    await invite(browser, tenant.owner, email)
    sub = user(idp, email, nonce="replayed-from-another-sign-in")
    assert (await sso(browser, idp, sub, tenant=tenant.slug))["error"] == "invalid_id_token"


async def test_expired_id_token_is_refused(
    browser: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    with running_provider(token_max_age=timedelta(seconds=-300)) as stale:
        await configure(browser, tenant.owner, stale)
        email = f"heidi-{secrets.token_hex(3)}@corp.example"
        await invite(browser, tenant.owner, email)
        result = await sso(browser, stale, user(stale, email), tenant=tenant.slug)
    assert result["error"] == "expired_id_token"


async def test_key_rotation_at_the_provider_is_followed(
    browser: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    with running_provider() as rotating:
        await configure(browser, tenant.owner, rotating)
        email = f"ivan-{secrets.token_hex(3)}@corp.example"
        await invite(browser, tenant.owner, email)
        sub = user(rotating, email)
        first = await sso(browser, rotating, sub, tenant=tenant.slug)
        assert "access_token" in first
        rotating.rotate_keys()  # the cached key set no longer verifies new tokens
        second = await sso(browser, rotating, sub, tenant=tenant.slug)
        assert second["user"]["id"] == first["user"]["id"]


async def test_wrongly_signed_id_tokens_are_refused(idp: OidcProvider) -> None:
    """Tokens with the right claims but the wrong key, or HS256 keyed with the client secret."""
    client = OidcClient(EgressPolicy.build(["127.0.0.1"], [443]), jwks_refresh_seconds=0)
    config = ClientConfig(idp.issuer, "mtai-test", "s3cret-value-s3cret-value-32byte", (), "")
    metadata = await client.metadata(idp.issuer)
    now = int(time.time())
    claims = {
        "iss": idp.issuer,
        "aud": "mtai-test",
        "sub": "someone",
        "iat": now,
        "exp": now + 300,
        "nonce": "n-1",
    }
    forged = jwt.encode({"alg": "RS256"}, claims, RSAKey.generate_key(2048))
    with pytest.raises(OidcError) as bad:
        await client._verify(config, metadata, forged, "n-1")
    assert bad.value.code == "invalid_signature"
    assert config.client_secret is not None
    symmetric = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(config.client_secret))
    with pytest.raises(OidcError) as hs:
        await client._verify(config, metadata, symmetric, "n-1")
    assert hs.value.code in ("invalid_signature", "invalid_id_token")
    header, payload = (
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
        for part in ({"alg": "none"}, claims)
    )
    unsigned = f"{header}.{payload}."
    with pytest.raises(OidcError):
        await client._verify(config, metadata, unsigned, "n-1")


async def test_tenant_a_identity_is_refused_by_tenant_b(
    sso_app: FastAPI,
    browser: httpx.AsyncClient,
    rt: Runtime,
    tenant: TenantFixture,
    idp: OidcProvider,
) -> None:
    tenant_b = await make_tenant(browser, rt)
    await configure(browser, tenant.owner, idp, client_id="mtai-a")
    await configure(browser, tenant_b.owner, idp, client_id="mtai-b")
    email = f"judy-{secrets.token_hex(3)}@corp.example"
    await invite(browser, tenant.owner, email)
    sub = user(idp, email)
    in_a = await sso(browser, idp, sub, tenant=tenant.slug)
    assert in_a["user"]["tenant"]["slug"] == tenant.slug
    # Her session for A is no key to B.
    crossing = await browser.get(
        "/api/v1/auth/me",
        headers={"Authorization": f"Bearer {in_a['access_token']}", "X-Tenant-ID": tenant_b.slug},
    )
    assert crossing.status_code == 403
    # Signing in to B with the same provider account: B has not admitted her.
    assert (await sso(browser, idp, sub, tenant=tenant_b.slug))["error"] == "sso_not_provisioned"
    # A code the provider issued to A's client, delivered into B's flow, is refused.
    async with new_browser(sso_app) as b_browser:
        b_url = await begin(b_browser, tenant=tenant_b.slug)
        a_url = b_url.replace("client_id=mtai-b", "client_id=mtai-a")
        redirect = await asyncio.to_thread(idp.sign_in, a_url, sub)
        error = (await come_back(b_browser, redirect))["error"]
    assert error in ("code_exchange_failed", "invalid_id_token")


# -- enforcement -----------------------------------------------------------------------------


async def test_enforced_sso_ends_password_sign_in_except_owners_break_glass(
    browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp)
    member_password_token = tenant.member
    assert (await browser.get("/api/v1/auth/me", headers=member_password_token)).status_code == 200
    admin_put = await configure(browser, tenant.owner, idp, enforce_sso=True)
    assert admin_put["enforce_sso"] is True
    refused = await browser.post(
        "/api/v1/auth/login",
        json={"email": tenant.member_email, "password": tenant.member_password},
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "sso_required"
    # The member's earlier password session ends at once.
    ended = await browser.get("/api/v1/auth/me", headers=member_password_token)
    assert ended.status_code == 401
    assert ended.json()["code"] == "sso_required"
    # The owner's password still works: break-glass, audited.
    owner_token = await login(browser, tenant.owner_email, tenant.owner_password)
    owner = {"Authorization": f"Bearer {owner_token}"}
    assert (await browser.get("/api/v1/auth/me", headers=owner)).status_code == 200
    assert "auth.break_glass" in await audit_actions(browser, owner)
    # Members come in through the provider.
    email = f"ken-{secrets.token_hex(3)}@corp.example"
    await invite(browser, owner, email)
    signed = await sso(browser, idp, user(idp, email), tenant=tenant.slug)
    sso_headers = {"Authorization": f"Bearer {signed['access_token']}"}
    assert (await browser.get("/api/v1/auth/me", headers=sso_headers)).status_code == 200


async def test_an_identity_a_provider_vouches_for_cannot_be_claimed_with_an_invitation(
    browser: httpx.AsyncClient, rt: Runtime, tenant: TenantFixture, idp: OidcProvider
) -> None:
    """It has no password, like an imported identity, yet is not free for a token holder to
    activate: that would take over its membership in the provider's tenant."""
    await configure(browser, tenant.owner, idp)
    email = f"liz-{secrets.token_hex(3)}@corp.example"
    await invite(browser, tenant.owner, email)
    signed = await sso(browser, idp, user(idp, email), tenant=tenant.slug)
    other = await make_tenant(browser, rt)
    invited = await invite(browser, other.owner, email)
    claimed = await browser.post(
        "/api/v1/invitations/accept",
        json={"token": invited["token"], "password": "a-password-of-my-choosing"},
    )
    assert claimed.status_code == 409
    assert claimed.json()["code"] == "login_to_accept"
    # The person, signed in through their provider, accepts it themselves.
    accepted = await browser.post(
        "/api/v1/invitations/accept",
        json={"token": invited["token"]},
        headers={"Authorization": f"Bearer {signed['access_token']}"},
    )
    assert accepted.status_code == 200, accepted.text


async def test_two_first_sign_ins_at_once_make_one_identity(
    sso_app: FastAPI, browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp)
    email = f"mia-{secrets.token_hex(3)}@corp.example"
    await invite(browser, tenant.owner, email)
    sub = user(idp, email)
    async with new_browser(sso_app) as first, new_browser(sso_app) as second:
        redirects = [
            await asyncio.to_thread(idp.sign_in, await begin(b, tenant=tenant.slug), sub)
            for b in (first, second)
        ]
        both = await asyncio.gather(come_back(first, redirects[0]), come_back(second, redirects[1]))
    assert len({signed["user"]["id"] for signed in both}) == 1


def test_operators_manage_sso_with_the_cli(
    sso_settings: Settings, tenant: TenantFixture, idp: OidcProvider
) -> None:
    """In this process (the command's imports take seconds in a new one), with the
    deployment's environment."""
    env = deployment_env(sso_settings, MTAI_EGRESS_ALLOW_HOSTS="127.0.0.1")
    runner = CliRunner()

    def mtai(*args: str, stdin: str = "") -> str:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level  # the command configures logging
        get_settings.cache_clear()
        try:
            done = runner.invoke(
                cli.app, ["sso", *args, "--tenant", tenant.slug], input=stdin, env=env
            )
        finally:
            get_settings.cache_clear()
            root.handlers = handlers
            root.setLevel(level)
        assert done.exit_code == 0, (done.output, done.exception)
        return done.output

    configured = mtai(
        "configure",
        "--issuer",
        idp.issuer,
        "--client-id",
        "mtai-cli",
        "--client-secret-stdin",
        "--domain",
        "cli.example",
        "--group-role",
        "mtai-admins=admin",
        "--jit",
        stdin="cli-secret-value\n",
    )
    assert "client secret:     set" in configured
    assert "cli-secret-value" not in configured
    assert "'mtai-admins' -> admin" in configured
    assert "cli.example" in mtai("verify-domain", "cli.example")
    assert "enforced" in mtai("enforce", "--on")
    shown = mtai("show")
    assert "enforce SSO:       on" in shown
    assert "verified domains:  cli.example" in shown
    token = mtai("scim-token").strip().splitlines()[-1]
    assert token.startswith("scim_")
    assert "revoked" in mtai("scim-token", "--revoke")
    assert "removed" in mtai("remove")


async def test_scim_pre_authorises_with_its_groups_and_deprovisions_sso_members(
    browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp, group_roles={"mtai-admins": "admin"})
    issued = await browser.post("/api/v1/sso/scim-token", headers=tenant.owner)
    assert issued.status_code == 201, issued.text
    scim = {
        "Authorization": f"Bearer {issued.json()['token']}",
        "Content-Type": "application/scim+json",
    }
    email = f"nina-{secrets.token_hex(3)}@corp.example"
    created = await browser.post(
        "/scim/v2/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": email,
            "active": True,
        },
        headers=scim,
    )
    assert created.status_code == 201, created.text
    group = await browser.post(
        "/scim/v2/Groups",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "mtai-admins",
            "members": [{"value": created.json()["id"]}],
        },
        headers=scim,
    )
    assert group.status_code == 201, group.text
    # No invitation: the directory admits her, with the role of her directory groups.
    sub = user(idp, email)
    signed = {**await sso(browser, idp, sub, tenant=tenant.slug), "sub": sub}
    assert signed["user"]["tenant"]["role"] == "admin"
    session = {"Authorization": f"Bearer {signed['access_token']}"}
    key = await browser.post(
        "/api/v1/keys", json={"name": "nina", "scopes": ["chat"]}, headers=session
    )
    assert key.status_code == 201, key.text
    # The directory deactivates her: session and key end at once, and SSO refuses her.
    deactivated = await browser.patch(
        f"/scim/v2/Users/{created.json()['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        },
        headers=scim,
    )
    assert deactivated.status_code == 200, deactivated.text
    assert (await browser.get("/api/v1/auth/me", headers=session)).status_code == 401
    revoked = await browser.get("/api/v1/auth/me", headers={"X-API-Key": key.json()["key"]})
    assert revoked.json()["code"] == "api_key_revoked"
    again = await sso(browser, idp, signed["sub"], tenant=tenant.slug)
    assert again["error"] == "sso_deprovisioned"


async def test_an_unlinked_member_of_an_enforcing_tenant_links_with_the_password(
    sso_app: FastAPI, browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    """Enforcement refuses their password session, so the password itself proves them."""
    await configure(browser, tenant.owner, idp, enforce_sso=True)
    sub = user(idp, tenant.member_email)
    assert (await sso(browser, idp, sub, tenant=tenant.slug))["error"] == "sso_not_provisioned"
    wrong = await browser.post(
        "/api/v1/auth/sso/link-password",
        json={"tenant": tenant.slug, "email": tenant.member_email, "password": "not-it-at-all"},
    )
    assert wrong.status_code == 401
    async with new_browser(sso_app) as theirs:
        started = await theirs.post(
            "/api/v1/auth/sso/link-password",
            json={
                "tenant": tenant.slug,
                "email": tenant.member_email,
                "password": tenant.member_password,
            },
        )
        assert started.status_code == 200, started.text
        url = started.json()["authorization_url"]
        linked = await come_back(theirs, await asyncio.to_thread(idp.sign_in, url, sub))
    assert linked["user"]["id"] == str(tenant.member_id)
    assert linked["user"]["tenant"]["role"] == "member"
    # From now on, plain SSO finds her by the binding.
    assert (await sso(browser, idp, sub, tenant=tenant.slug))["user"]["id"] == linked["user"]["id"]


async def test_an_unreadable_client_secret_is_a_clear_refusal(
    browser: httpx.AsyncClient, rt: Runtime, tenant: TenantFixture, idp: OidcProvider
) -> None:
    """MTAI_ENCRYPTION_KEY changed (or the row was copied from another tenant)."""
    await configure(browser, tenant.owner, idp)
    async with rt.db.tenant(tenant.id) as session:
        await sso_repo.put(session, tenant.id, client_secret_encrypted=b"\x02" + b"x" * 40)
    start = await browser.get("/api/v1/auth/sso/start", params={"tenant": tenant.slug})
    assert (await outcome(browser, start))["error"] == "sso_misconfigured"
