"""Attacks on enterprise identity: OIDC sign-in, its cookies, enforcement, and SCIM.

Each test asserts the safe behaviour. The app, the loopback OIDC provider and the helpers are
those of tests/integration/test_sso.py; `FakeIssuer` below is a hand-made provider for answers
a real one would not give (hostile discovery documents, key sets, slow or huge bodies).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from mtai.providers.egress import EgressPolicy
from mtai.providers.oidc import Authorization, ClientConfig, OidcClient, OidcError
from tests.conftest import TenantFixture, accept_invitation, invite, make_tenant
from tests.integration import test_sso as sso_suite
from tests.integration.test_sso import (
    BASE,
    begin,
    come_back,
    configure,
    new_browser,
    outcome,
    sso,
    user,
)
from tests.support.oidc_provider import OidcProvider, running_provider

SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

# The SSO suite's fixtures: its app (loopback allow-listed), provider, browser and tenant.
idp = sso_suite.idp
sso_settings = sso_suite.sso_settings
sso_app = sso_suite.sso_app
browser = sso_suite.browser
rt = sso_suite.rt
tenant = sso_suite.tenant


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    trickle_seconds: float = 0.0  # > 0: one byte at a time, this far apart


class FakeIssuer:
    """An OIDC issuer on loopback whose every answer the test chooses."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                route = routes.get(self.path.split("?")[0], Route(404, b"{}"))
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                if not route.trickle_seconds:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                try:
                    if route.trickle_seconds:
                        for byte in route.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(route.trickle_seconds)
                    else:
                        self.wfile.write(route.body)
                except OSError:
                    pass

            do_GET = _answer  # noqa: N815 - http.server's naming
            do_POST = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "good"})
        self.discovery()
        self.json("/jwks", {"keys": [self.key.as_dict(private=False)]})

    def json(self, path: str, body: Any, **options: Any) -> None:
        self.routes[path] = Route(body=json.dumps(body).encode(), **options)

    def discovery(self, **fields: Any) -> None:
        document = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            **fields,
        }
        self.json("/.well-known/openid-configuration", document)


@pytest.fixture
def fake() -> Iterator[FakeIssuer]:
    issuer = FakeIssuer()
    thread = threading.Thread(target=issuer.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        issuer.server.shutdown()
        issuer.server.server_close()
        thread.join(timeout=10)


def loopback_client(**options: Any) -> OidcClient:
    """A relying party for which loopback is allow-listed (as in the test app), nothing else."""
    return OidcClient(EgressPolicy.build(["127.0.0.1"], [443]), jwks_refresh_seconds=0, **options)


def id_token_claims(issuer: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": "mtai-test",
        "sub": "someone",
        "iat": now,
        "exp": now + 300,
        "nonce": "n-1",
        "email": "someone@corp.example",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
async def lenient_browser(sso_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser that sees a server error as the 500 a real browser would get."""
    transport = httpx.ASGITransport(app=sso_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


async def admin_of(client: httpx.AsyncClient, tenant: TenantFixture) -> tuple[str, dict[str, str]]:
    """A second person, invited as admin (not owner) with a password: (email, headers)."""
    email = f"admin-{secrets.token_hex(3)}@{tenant.slug}.example"
    invited = await invite(client, tenant.owner, email, "admin")
    token = await accept_invitation(client, invited["token"], secrets.token_urlsafe(16))
    return email, {"Authorization": f"Bearer {token}"}


async def link(
    sso_app: FastAPI, idp: OidcProvider, headers: dict[str, str], slug: str, sub: str
) -> dict[str, Any]:
    """The signed-in person links their account to the tenant's provider as `sub`."""
    async with new_browser(sso_app) as theirs:
        started = await theirs.post("/api/v1/auth/sso/link", json={"tenant": slug}, headers=headers)
        assert started.status_code == 200, started.text
        url = started.json()["authorization_url"]
        return await come_back(theirs, await asyncio.to_thread(idp.sign_in, url, sub))


def scim_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}


async def role_in(client: httpx.AsyncClient, owner: dict[str, str], email: str) -> str | None:
    listed = await client.get("/api/v1/users?limit=200", headers=owner)
    assert listed.status_code == 200, listed.text
    items = listed.json()
    items = items["items"] if isinstance(items, dict) else items
    roles = [u["role"] for u in items if u["email"] == email]
    return roles[0] if roles else None


# -- findings: an admin acts as an owner -----------------------------------------------------


async def test_admin_cannot_become_owner_through_a_scim_group_mapped_to_owner(
    sso_app: FastAPI, browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    """Mapping a group to owner is an owner's decision; putting someone in that group must be
    one too. An admin mints a SCIM token and becomes 'the directory'."""
    await configure(browser, tenant.owner, idp, group_roles={"mtai-owners": "owner"})
    admin_email, admin = await admin_of(browser, tenant)
    issued = await browser.post("/api/v1/sso/scim-token", headers=admin)
    if issued.status_code == 201:
        scim = scim_headers(issued.json()["token"])
        me = await browser.post(
            "/scim/v2/Users", json={"schemas": [SCIM_USER], "userName": admin_email}, headers=scim
        )
        assert me.status_code == 201, me.text
        group = await browser.post(
            "/scim/v2/Groups",
            json={
                "schemas": [SCIM_GROUP],
                "displayName": "mtai-owners",
                "members": [{"value": me.json()["id"]}],
            },
            headers=scim,
        )
        assert group.status_code == 201, group.text
        # The admin's own first SSO sign-in binds the SCIM user and reads its groups.
        await link(sso_app, idp, admin, tenant.slug, user(idp, admin_email))
    assert await role_in(browser, tenant.owner, admin_email) == "admin"


async def test_admin_cannot_deprovision_an_owner_through_a_scim_token(
    sso_app: FastAPI, browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    """Admins may not remove owners (DELETE /users answers owner_required); minting a SCIM
    token must not give them that power over the tenant's (here: last) owner."""
    await configure(browser, tenant.owner, idp)
    owners_token = (await browser.post("/api/v1/sso/scim-token", headers=tenant.owner)).json()
    entry = await browser.post(
        "/scim/v2/Users",
        json={"schemas": [SCIM_USER], "userName": tenant.owner_email},
        headers=scim_headers(owners_token["token"]),
    )
    assert entry.status_code == 201, entry.text
    # The owner links SSO: the directory's entry is bound to them.
    await link(sso_app, idp, tenant.owner, tenant.slug, user(idp, tenant.owner_email))
    _, admin = await admin_of(browser, tenant)
    issued = await browser.post("/api/v1/sso/scim-token", headers=admin)
    if issued.status_code == 201:
        await browser.patch(
            f"/scim/v2/Users/{entry.json()['id']}",
            json={
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "path": "active", "value": False}],
            },
            headers=scim_headers(issued.json()["token"]),
        )
    login = await browser.post(
        "/api/v1/auth/login",
        json={"email": tenant.owner_email, "password": tenant.owner_password},
    )
    assert login.status_code == 200, login.text
    assert login.json()["user"]["tenant"] is not None, "the owner is no longer a member"
    assert login.json()["user"]["tenant"]["role"] == "owner"


async def test_admin_cannot_become_owner_by_swapping_the_issuer_under_an_owner_mapping(
    sso_app: FastAPI, browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    """The owner mapped a group to owner. An admin keeps the mapping (so no owner check) but
    points the provider at an issuer the admin runs, which puts them in that group."""
    await configure(
        browser, tenant.owner, idp, groups_claim="groups", group_roles={"mtai-owners": "owner"}
    )
    admin_email, admin = await admin_of(browser, tenant)
    with running_provider() as rogue:
        swapped = await browser.put(
            "/api/v1/sso",
            json={
                "issuer": rogue.issuer,
                "client_id": "anything",
                "groups_claim": "groups",
                "group_roles": {"mtai-owners": "owner"},
            },
            headers=admin,
        )
        if swapped.status_code == 200:
            sub = user(rogue, admin_email, groups=["mtai-owners"])
            await link(sso_app, rogue, admin, tenant.slug, sub)
    assert swapped.status_code == 403, swapped.text
    assert await role_in(browser, tenant.owner, admin_email) == "admin"


# -- finding: the hand-off -------------------------------------------------------------------


async def test_a_captured_handoff_cookie_is_redeemed_once(
    sso_app: FastAPI, browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    """'The outcome is handed over once': deleting the cookie in the browser that redeemed it
    does not stop a copy (a proxy log, a shared machine) from minting more sessions."""
    await configure(browser, tenant.owner, idp)
    email = f"hand-{secrets.token_hex(3)}@corp.example"
    await invite(browser, tenant.owner, email)
    redirect = await asyncio.to_thread(
        idp.sign_in, await begin(browser, tenant=tenant.slug), user(idp, email)
    )
    landing = await browser.get(redirect)
    handoff = browser.cookies.get("mtai_sso_handoff")
    assert handoff
    first = await browser.post("/api/v1/auth/sso/exchange")
    assert first.status_code == 200, first.text
    async with new_browser(sso_app) as copy:
        copy.cookies.set("mtai_sso_handoff", handoff)
        replayed = await copy.post("/api/v1/auth/sso/exchange")
    assert landing.status_code == 303
    assert replayed.status_code == 401, replayed.text


# -- findings: hostile provider answers are refused cleanly ---------------------------------


@pytest.mark.parametrize("claim", ["email", "name"])
async def test_a_nul_character_in_a_claim_is_a_clean_refusal(
    lenient_browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider, claim: str
) -> None:
    """PostgreSQL text and jsonb hold no NUL: a provider's claim with one must not be a 500
    (SCIM already refuses NUL; the sign-in path does not)."""
    await configure(lenient_browser, tenant.owner, idp)
    email = f"nul-{secrets.token_hex(3)}@corp.example"
    await invite(lenient_browser, tenant.owner, email)
    sub = f"sub-{secrets.token_hex(4)}"
    claims = {"email": email, "email_verified": True, "name": "Nul"}
    claims[claim] = "\x00" + claims[claim]
    idp.set_user(sub, **claims)
    url = await begin(lenient_browser, tenant=tenant.slug)
    redirect = await asyncio.to_thread(idp.sign_in, url, sub)
    response = await lenient_browser.get(redirect)
    assert response.status_code == 303, (response.status_code, response.text[:300])
    await outcome(lenient_browser, response)  # a session, or the reason on /ui/sso


async def test_a_malformed_key_set_is_provider_invalid_not_a_crash(fake: FakeIssuer) -> None:
    client = loopback_client()
    for keys in ([1], ["x"], [None], [{"kty": "RSA"}], "nope", [{"kty": "EC", "crv": "P-1"}]):
        fake.json("/jwks", {"keys": keys})
        client.forget(fake.issuer)
        metadata = await client.metadata(fake.issuer)
        token = jwt.encode({"alg": "RS256", "kid": "good"}, id_token_claims(fake.issuer), fake.key)
        config = ClientConfig(fake.issuer, "mtai-test", None, (), "")
        with pytest.raises(OidcError) as refused:
            await client._verify(config, metadata, token, "n-1")
        assert refused.value.code in ("provider_invalid", "invalid_signature"), keys


async def test_a_provider_that_trickles_its_answer_is_cut_off(fake: FakeIssuer) -> None:
    """MTAI_SSO_TIMEOUT_SECONDS bounds each read, not the call: a provider sending a byte a
    second under the read timeout holds a /start request (unauthenticated) for days."""
    document = json.dumps({"issuer": fake.issuer, "pad": " " * 4000}).encode()
    fake.routes["/.well-known/openid-configuration"] = Route(body=document, trickle_seconds=0.2)
    client = loopback_client(timeout_seconds=1.0)
    started = time.monotonic()
    try:
        fetched: Any = await asyncio.wait_for(client.metadata(fake.issuer), timeout=10)
    except OidcError as exc:
        fetched = exc
    except TimeoutError:
        fetched = None
    elapsed = time.monotonic() - started
    assert fetched is not None, f"still reading after {elapsed:.0f}s with a 1 s timeout"
    assert isinstance(fetched, OidcError)
    assert fetched.code == "provider_unreachable"
    assert elapsed < 5


# -- refused correctly: regression guards ----------------------------------------------------


async def test_id_tokens_for_another_party_or_time_or_key_are_refused(fake: FakeIssuer) -> None:
    secret = OctKey.generate_key(256, parameters={"kid": "sym"})
    fake.json("/jwks", {"keys": [fake.key.as_dict(private=False), secret.as_dict(private=True)]})
    client = loopback_client()
    metadata = await client.metadata(fake.issuer)
    config = ClientConfig(fake.issuer, "mtai-test", None, (), "")
    now = int(time.time())
    good = {"alg": "RS256", "kid": "good"}
    attempts = {
        "aud of another client": (good, id_token_claims(fake.issuer, aud="other-client")),
        "aud list, no azp": (good, id_token_claims(fake.issuer, aud=["mtai-test", "other"])),
        "azp of another client": (good, id_token_claims(fake.issuer, azp="other-client")),
        "issued in the future": (good, id_token_claims(fake.issuer, iat=now + 3600)),
        "no nonce": (good, id_token_claims(fake.issuer, nonce=None)),
        "no iat": (good, id_token_claims(fake.issuer, iat=None)),
        "another issuer": (good, id_token_claims(fake.issuer, iss="https://evil.example")),
        "sub of 256 chars": (good, id_token_claims(fake.issuer, sub="s" * 256)),
        "sub not ascii": (good, id_token_claims(fake.issuer, sub="sübject")),
        "exp not a number": (good, id_token_claims(fake.issuer, exp="tomorrow")),
    }
    for name, (header, claims) in attempts.items():
        token = jwt.encode(header, claims, fake.key)
        with pytest.raises(OidcError) as refused:
            await client._verify(config, metadata, token, "n-1")
        assert refused.value.code == "invalid_id_token", name
    # HS256 keyed with a symmetric key the JWKS publishes (kty oct), and a key of our own
    # that names the provider's kid.
    symmetric = jwt.encode({"alg": "HS256", "kid": "sym"}, id_token_claims(fake.issuer), secret)
    impostor = RSAKey.generate_key(2048, parameters={"kid": "good"})
    forged = jwt.encode(good, id_token_claims(fake.issuer), impostor)
    for token in (symmetric, forged):
        with pytest.raises(OidcError) as refused:
            await client._verify(config, metadata, token, "n-1")
        assert refused.value.code in ("invalid_signature", "invalid_id_token")
    # The control: the same checks pass a proper token.
    proper = jwt.encode(good, id_token_claims(fake.issuer), fake.key)
    assert (await client._verify(config, metadata, proper, "n-1"))["sub"] == "someone"


@pytest.mark.parametrize("endpoint", ["jwks_uri", "token_endpoint", "userinfo_endpoint"])
@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/x",
        "http://[::ffff:169.254.169.254]/x",
        "http://localhost.localdomain:1/x",
        "file:///etc/passwd",
    ],
)
async def test_a_discovery_document_cannot_point_inside_the_network(
    fake: FakeIssuer, endpoint: str, target: str
) -> None:
    """Loopback is allow-listed for the issuer; what its document names is checked on its own."""
    fake.discovery(**{endpoint: target})
    client = loopback_client()
    config = ClientConfig(fake.issuer, "mtai-test", "secret", ("openid",), "http://x/cb")
    metadata = await client.metadata(fake.issuer)  # saving only checks the document's shape
    token = jwt.encode(
        {"alg": "RS256", "kid": "good"}, id_token_claims(fake.issuer, email=None), fake.key
    )
    fake.json("/token", {"id_token": token, "access_token": "at"})
    with pytest.raises(OidcError) as refused:
        if endpoint == "jwks_uri":
            await client._verify(config, metadata, token, "n-1")
        else:
            identity = await client.complete(config, "code", Authorization("", "s", "n-1", "v"))
            # userinfo refused: the sign-in goes on without its answer.
            assert identity.email is None
            raise OidcError("userinfo not used", "issuer_refused")
    assert refused.value.code == "issuer_refused", refused.value


async def test_provider_redirects_and_huge_answers_are_not_followed_or_read(
    fake: FakeIssuer,
) -> None:
    client = loopback_client()
    fake.routes["/.well-known/openid-configuration"] = Route(
        302, b"", {"Location": "http://169.254.169.254/latest/meta-data"}
    )
    with pytest.raises(OidcError) as redirected:
        await client.metadata(fake.issuer)
    assert redirected.value.code == "provider_unreachable"
    fake.discovery(padding="x" * (600 * 1024))
    with pytest.raises(OidcError) as huge:
        await client.metadata(fake.issuer)
    assert huge.value.code == "provider_unreachable"


async def test_extreme_claims_are_clean_refusals(
    browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp, groups_claim="groups", group_roles={"a": "admin"})
    email = f"big-{secrets.token_hex(3)}@corp.example"
    await invite(browser, tenant.owner, email)
    long_sub = "s" * 300
    idp.set_user(long_sub, email=email, email_verified=True)
    assert (await sso(browser, idp, long_sub, tenant=tenant.slug))["error"] == "invalid_id_token"
    long_email = f"{'x' * 320}@corp.example"
    assert (await sso(browser, idp, user(idp, long_email), tenant=tenant.slug))["error"] == (
        "sso_no_email"
    )
    # Entra's most (200 group ids): the person comes in, as the mapping says; a token over
    # the size bounds (joserfc's 128 kB payload, our 512 KiB answer) is a clean refusal.
    groups = [str(uuid.uuid4()) for _ in range(200)]
    signed = await sso(browser, idp, user(idp, email, groups=groups), tenant=tenant.slug)
    assert signed.get("user", {}).get("tenant", {}).get("role") == "member", signed
    huge = [f"g-{i}-{'y' * 500}" for i in range(5000)]
    refused = await sso(browser, idp, user(idp, email, groups=huge), tenant=tenant.slug)
    assert refused["error"] == "code_exchange_failed"


async def test_a_completed_flow_replayed_from_another_browser_signs_no_one_in(
    sso_app: FastAPI, browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp)
    email = f"replay-{secrets.token_hex(3)}@corp.example"
    await invite(browser, tenant.owner, email)
    url = await begin(browser, tenant=tenant.slug)
    flow = browser.cookies.get("mtai_sso_flow")
    assert flow
    redirect = await asyncio.to_thread(idp.sign_in, url, user(idp, email))
    assert "access_token" in await come_back(browser, redirect)
    async with new_browser(sso_app) as thief:
        thief.cookies.set("mtai_sso_flow", flow)
        # Refused by the provider (a code is used once); mtai keeps no record of used flows.
        replayed = await outcome(thief, await thief.get(redirect))
        assert replayed.get("error") == "code_exchange_failed", replayed
        # A flow cookie is sealed for the flow: as a hand-off it is no cookie at all.
        thief.cookies.set("mtai_sso_handoff", flow)
        swapped = await thief.post("/api/v1/auth/sso/exchange")
        assert swapped.json()["code"] == "sso_handoff_invalid"


async def test_a_flow_begun_before_the_issuer_changed_is_refused(
    browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp)
    email = f"switch-{secrets.token_hex(3)}@corp.example"
    await invite(browser, tenant.owner, email)
    url = await begin(browser, tenant=tenant.slug)
    with running_provider() as other:
        await configure(browser, tenant.owner, other)
        redirect = await asyncio.to_thread(idp.sign_in, url, user(idp, email))
        assert (await come_back(browser, redirect))["error"] == "sso_not_configured"


async def test_another_tenants_identity_is_not_taken_over_through_scim(
    browser: httpx.AsyncClient, rt: Any, tenant: TenantFixture, idp: OidcProvider
) -> None:
    """Tenant A's directory and provider claim tenant B's owner's email."""
    other = await make_tenant(browser, rt)
    await configure(browser, tenant.owner, idp, jit_provisioning=True)
    token = (await browser.post("/api/v1/sso/scim-token", headers=tenant.owner)).json()["token"]
    created = await browser.post(
        "/scim/v2/Users",
        json={
            "schemas": [SCIM_USER],
            "userName": other.owner_email.upper(),
            "externalId": "x",
            "emails": [{"value": other.owner_email, "primary": True}],
        },
        headers=scim_headers(token),
    )
    assert created.status_code == 201, created.text
    result = await sso(browser, idp, user(idp, other.owner_email), tenant=tenant.slug)
    assert result["error"] == "sso_not_provisioned"


async def test_scim_cannot_reach_another_tenants_directory_and_bounds_filters(
    browser: httpx.AsyncClient, rt: Any, tenant: TenantFixture, idp: OidcProvider
) -> None:
    other = await make_tenant(browser, rt)
    await configure(browser, tenant.owner, idp)
    await configure(browser, other.owner, idp)
    mine = scim_headers(
        (await browser.post("/api/v1/sso/scim-token", headers=tenant.owner)).json()["token"]
    )
    theirs = scim_headers(
        (await browser.post("/api/v1/sso/scim-token", headers=other.owner)).json()["token"]
    )
    victim = await browser.post(
        "/scim/v2/Users", json={"schemas": [SCIM_USER], "userName": "v@b.example"}, headers=theirs
    )
    group = await browser.post(
        "/scim/v2/Groups", json={"schemas": [SCIM_GROUP], "displayName": "g"}, headers=theirs
    )
    vid, gid = victim.json()["id"], group.json()["id"]
    assert (await browser.get(f"/scim/v2/Users/{vid}", headers=mine)).status_code == 404
    assert (await browser.delete(f"/scim/v2/Users/{vid}", headers=mine)).status_code == 404
    deactivate = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    assert (
        await browser.patch(f"/scim/v2/Users/{vid}", json=deactivate, headers=mine)
    ).status_code == 404
    add = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": vid}]}],
    }
    assert (await browser.patch(f"/scim/v2/Groups/{gid}", json=add, headers=mine)).status_code == (
        404
    )
    stolen = await browser.post(
        "/scim/v2/Groups",
        json={"schemas": [SCIM_GROUP], "displayName": "mine", "members": [{"value": vid}]},
        headers=mine,
    )
    assert stolen.status_code == 400
    # Same userName in two tenants is two directories, not a collision.
    same = await browser.post(
        "/scim/v2/Users", json={"schemas": [SCIM_USER], "userName": "v@b.example"}, headers=mine
    )
    assert same.status_code == 201
    listed = await browser.get(
        "/scim/v2/Users", params={"filter": 'userName eq "v@b.example"'}, headers=mine
    )
    assert [u["id"] for u in listed.json()["Resources"]] == [same.json()["id"]]
    # Server-owned and binding fields are not the directory's to write.
    meddle = {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "add", "path": "user_id", "value": str(other.member_id)},
            {"op": "replace", "path": "id", "value": vid},
        ],
    }
    patched = await browser.patch(f"/scim/v2/Users/{same.json()['id']}", json=meddle, headers=mine)
    assert patched.status_code in (200, 400), patched.text
    assert (await browser.get(f"/scim/v2/Users/{vid}", headers=theirs)).status_code == 200
    # Filters: injection is a value, and depth and size are bounded (4xx, never 500).
    for hostile in (
        'userName eq "x\' OR 1=1 --"',
        'userName co "%"',
        "not (" * 400 + 'userName eq "x"' + ")" * 400,
        "(" * 2000 + 'userName eq "x"' + ")" * 2000,
        " or ".join(f'userName eq "u{i}"' for i in range(150)),
        'userName eq "' + "z" * 20000 + '"',
    ):
        answer = await browser.get("/scim/v2/Users", params={"filter": hostile}, headers=mine)
        assert answer.status_code < 500, (hostile[:40], answer.status_code)
        if answer.status_code == 200:
            assert answer.json()["totalResults"] == 0, hostile[:40]


async def test_enforcement_is_lifted_by_owners_only(
    sso_app: FastAPI, browser: httpx.AsyncClient, tenant: TenantFixture, idp: OidcProvider
) -> None:
    await configure(browser, tenant.owner, idp)
    admin_email, admin_password_session = await admin_of(browser, tenant)
    linked = await link(sso_app, idp, admin_password_session, tenant.slug, user(idp, admin_email))
    admin = {"Authorization": f"Bearer {linked['access_token']}"}  # an SSO session
    await configure(browser, tenant.owner, idp, enforce_sso=True)
    # The admin's password session made before enforcement ends; the SSO one goes on.
    assert (await browser.get("/api/v1/auth/me", headers=admin_password_session)).status_code == (
        401
    )
    body = {"issuer": idp.issuer, "client_id": "mtai-test"}
    for headers in (admin, tenant.api_key):
        for change in ({"enforce_sso": False}, {"enforce_sso": True, "enabled": False}):
            lifted = await browser.put("/api/v1/sso", json={**body, **change}, headers=headers)
            assert lifted.status_code == 403, (change, lifted.text)
        removed = await browser.delete("/api/v1/sso", headers=headers)
        assert removed.status_code == 403
    shown = await browser.get("/api/v1/sso", headers=tenant.owner)
    assert shown.json()["enforce_sso"] is True
    assert shown.json()["enabled"] is True
