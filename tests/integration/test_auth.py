"""Login, tokens, API keys, tenant selection and suspension, through the HTTP API."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
from sqlalchemy import event

from mtai.errors import Unauthorized
from mtai.runtime import Runtime, open_runtime
from mtai.services import tokens
from tests.conftest import AdminFixture, TenantFixture, join, login, make_tenant


async def test_login_returns_token_and_user(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["user"]["email"] == tenant_a.owner_email
    assert body["user"]["tenant"]["slug"] == tenant_a.slug
    assert body["user"]["tenant"]["role"] == "owner"
    assert "password" not in response.text.lower().replace("password_", "")


async def test_login_wrong_password_and_unknown_email_look_the_same(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": tenant_a.owner_email, "password": "not-the-password"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@nowhere.example", "password": "whatever-it-is"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert wrong.json()["code"] == "invalid_credentials"


async def test_me_with_token_and_both_key_headers(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    me = (await client.get("/api/v1/auth/me", headers=tenant_a.owner)).json()
    assert me["tenant_id"] == str(tenant_a.id)
    assert me["role"] == "owner"
    assert me["email"] == tenant_a.owner_email
    for headers in ({"X-API-Key": tenant_a.key}, {"Authorization": f"Bearer {tenant_a.key}"}):
        key_me = (await client.get("/api/v1/auth/me", headers=headers)).json()
        assert key_me["api_key_id"] == str(tenant_a.key_id)
        assert key_me["tenant_id"] == str(tenant_a.id)
        assert key_me["scopes"] == ["admin", "chat", "rag:read", "rag:write"]


async def test_user_in_several_tenants_picks_with_x_tenant_id(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    # The owner of A becomes a member of B.
    await join(client, tenant_b.owner, tenant_a.owner_email, tenant_a.owner_password, "member")
    default = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password},
    )
    assert default.json()["user"]["tenant"]["slug"] == tenant_a.slug
    assert {t["slug"] for t in default.json()["user"]["tenants"]} == {tenant_a.slug, tenant_b.slug}
    token_b = await login(
        client, tenant_a.owner_email, tenant_a.owner_password, **{"X-Tenant-ID": tenant_b.slug}
    )
    me = (
        await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token_b}"})
    ).json()
    assert me["tenant_id"] == str(tenant_b.id)
    assert me["role"] == "member"
    # A tenant the user does not belong to cannot be picked.
    other = await make_tenant(client, runtime)
    refused = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password},
        headers={"X-Tenant-ID": other.slug},
    )
    assert refused.status_code == 403


async def test_x_tenant_id_mismatch_is_403_for_non_admins(
    client: httpx.AsyncClient, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    for credential in (tenant_a.owner, tenant_a.api_key, tenant_a.member):
        for ref in (str(tenant_b.id), tenant_b.slug, "no-such-tenant"):
            response = await client.get(
                "/api/v1/auth/me", headers={**credential, "X-Tenant-ID": ref}
            )
            assert response.status_code == 403, (credential, ref)
            assert response.json()["code"] == "tenant_mismatch"
        same = await client.get(
            "/api/v1/auth/me", headers={**credential, "X-Tenant-ID": tenant_a.slug}
        )
        assert same.status_code == 200


async def test_platform_admin_acts_on_tenant_named_by_header(
    client: httpx.AsyncClient, platform_admin: AdminFixture, tenant_b: TenantFixture
) -> None:
    me = (await client.get("/api/v1/auth/me", headers=platform_admin.headers)).json()
    assert me["is_platform_admin"] is True
    assert me["tenant_id"] is None
    needs_tenant = await client.get("/api/v1/keys", headers=platform_admin.headers)
    assert needs_tenant.status_code == 422
    assert needs_tenant.json()["code"] == "tenant_required"
    acting = {**platform_admin.headers, "X-Tenant-ID": str(tenant_b.id)}
    keys = await client.get("/api/v1/keys", headers=acting)
    assert keys.status_code == 200
    assert [k["id"] for k in keys.json()["items"]] == [str(tenant_b.key_id)]
    missing = await client.get(
        "/api/v1/keys", headers={**platform_admin.headers, "X-Tenant-ID": "no-such-tenant"}
    )
    assert missing.status_code == 404


async def test_suspended_tenant_is_refused_at_once(
    client: httpx.AsyncClient, platform_admin: AdminFixture, tenant_a: TenantFixture
) -> None:
    assert (await client.get("/api/v1/auth/me", headers=tenant_a.api_key)).status_code == 200
    suspend = await client.post(
        f"/api/v1/tenants/{tenant_a.id}/suspend", headers=platform_admin.headers
    )
    assert suspend.json()["status"] == "suspended"
    for credential in (tenant_a.owner, tenant_a.member, tenant_a.api_key):
        response = await client.get("/api/v1/auth/me", headers=credential)
        assert response.status_code == 403
        assert response.json()["code"] == "tenant_suspended"
    relogin = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password},
    )
    assert relogin.status_code == 403
    await client.post(f"/api/v1/tenants/{tenant_a.id}/reactivate", headers=platform_admin.headers)
    assert (await client.get("/api/v1/auth/me", headers=tenant_a.api_key)).status_code == 200


async def test_expired_and_tampered_tokens_are_401(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    claims = tokens.decode(runtime.auth.jwt_secret, tenant_a.owner_token)
    expired = tokens.issue(
        runtime.auth.jwt_secret,
        user_id=claims.user_id,
        tenant_id=claims.tenant_id,
        ttl_seconds=-1,
        version=claims.version,
    )
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
    assert response.headers["www-authenticate"] == "Bearer"
    forged = jwt.encode(
        {
            "iss": "mtai",
            "sub": str(claims.user_id),
            "tid": str(claims.tenant_id),
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        "someone-elses-secret-that-is-long-enough",
        algorithm="HS256",
    )
    for bad in (forged, tenant_a.owner_token[:-3] + "abc", "garbage", "a.b.c"):
        response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, bad
        assert response.json()["code"] == "invalid_token"
    unsigned = jwt.encode({"sub": str(claims.user_id), "iss": "mtai"}, key="", algorithm="none")
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {unsigned}"})
    assert response.status_code == 401


async def test_removed_member_loses_access_at_once(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    assert (await client.get("/api/v1/auth/me", headers=tenant_a.member)).status_code == 200
    removed = await client.delete(f"/api/v1/users/{tenant_a.member_id}", headers=tenant_a.owner)
    assert removed.status_code == 204
    response = await client.get("/api/v1/auth/me", headers=tenant_a.member)
    # It was their only tenant: every session of theirs ended (a member elsewhere gets 403).
    assert response.status_code == 401
    assert response.json()["code"] == "token_revoked"


async def test_cached_credentials_need_no_database_round_trip(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    await runtime.auth.authenticate(tenant_a.key, None)
    await runtime.auth.authenticate(tenant_a.owner_token, tenant_a.slug)
    event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            await runtime.auth.authenticate(tenant_a.key, None)
            await runtime.auth.authenticate(tenant_a.owner_token, tenant_a.slug)
    finally:
        event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", count)
    # Only the batched last-used writer (off the request path) may have spoken to Postgres.
    flusher = ("SET LOCAL ROLE", "UPDATE api_keys SET last_used_at")
    assert [s for s in statements if not s.startswith(flusher)] == []


async def test_revocation_reaches_other_processes_before_the_ttl(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    """A second runtime (another API process) hears the revoke through LISTEN/NOTIFY."""
    other_settings = runtime.settings.model_copy(update={"auth_cache_ttl_seconds": 300.0})
    async with open_runtime(other_settings) as other:
        await asyncio.wait_for(other.listener_ready.wait(), 5)
        principal = await other.auth.authenticate(tenant_a.key, None)
        assert principal.api_key_id == tenant_a.key_id
        revoked = await client.post(
            f"/api/v1/keys/{tenant_a.key_id}/revoke", headers=tenant_a.owner
        )
        assert revoked.status_code == 200
        outcome = "still accepted after 5 s"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                await other.auth.authenticate(tenant_a.key, None)
            except Unauthorized as exc:
                outcome = exc.code
                break
            await asyncio.sleep(0.05)
        assert outcome == "api_key_revoked"


async def test_login_without_choice_prefers_an_active_tenant(
    client: httpx.AsyncClient,
    platform_admin: AdminFixture,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
) -> None:
    await join(client, tenant_b.owner, tenant_a.owner_email, tenant_a.owner_password, "member")
    await client.post(f"/api/v1/tenants/{tenant_a.id}/suspend", headers=platform_admin.headers)
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password},
    )
    assert response.status_code == 200
    assert response.json()["user"]["tenant"]["slug"] == tenant_b.slug
    await client.post(f"/api/v1/tenants/{tenant_a.id}/reactivate", headers=platform_admin.headers)


async def test_logins_are_audited(client: httpx.AsyncClient, tenant_a: TenantFixture) -> None:
    events = (
        await client.get(
            "/api/v1/admin/audit", params={"action": "auth.login"}, headers=tenant_a.owner
        )
    ).json()["items"]
    assert events
    assert events[0]["actor_type"] == "user"


async def test_password_guessing_backs_off_per_email_and_address(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    for _ in range(runtime.settings.login_free_failures + 1):
        wrong = await client.post(
            "/api/v1/auth/login",
            json={"email": tenant_a.owner_email, "password": "guess-guess-guess"},
        )
        assert wrong.status_code == 401
    throttled = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_a.owner_email.upper(), "password": tenant_a.owner_password},
    )
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "login_backoff"
    assert "wrong passwords" in throttled.json()["detail"]
    assert 0 < int(throttled.headers["retry-after"]) <= 2
    other = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_b.owner_email, "password": tenant_b.owner_password},
    )
    assert other.status_code == 200


async def test_a_platform_admin_in_a_tenant_can_still_log_in_to_the_platform(
    client: httpx.AsyncClient, platform_admin: AdminFixture, tenant_a: TenantFixture
) -> None:
    await join(client, tenant_a.owner, platform_admin.email, platform_admin.password, "admin")
    credentials = {"email": platform_admin.email, "password": platform_admin.password}
    in_tenant = await client.post("/api/v1/auth/login", json=credentials)
    assert in_tenant.json()["user"]["tenant"]["slug"] == tenant_a.slug

    platform = await client.post("/api/v1/auth/login", json={**credentials, "platform": True})
    assert platform.status_code == 200, platform.text
    assert platform.json()["user"]["tenant"] is None
    assert platform.json()["user"]["tenants"][0]["slug"] == tenant_a.slug
    headers = {"Authorization": f"Bearer {platform.json()['access_token']}"}
    me = await client.get("/api/v1/auth/me", headers=headers)
    assert me.json()["tenant_id"] is None
    assert me.json()["is_platform_admin"] is True
    assert (await client.get("/api/v1/tenants/", headers=headers)).status_code == 200

    both = await client.post(
        "/api/v1/auth/login",
        json={**credentials, "platform": True},
        headers={"X-Tenant-ID": tenant_a.slug},
    )
    assert both.status_code == 422
    assert "not both" in both.json()["detail"]
    refused = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password, "platform": True},
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_platform_admin"


async def test_users_change_their_own_password(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    url = "/api/v1/auth/password"
    new = "a-brand-new-passphrase"
    wrong = await client.post(
        url, json={"current_password": "nope", "new_password": new}, headers=tenant_a.owner
    )
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "wrong_password"
    short = await client.post(
        url,
        json={"current_password": tenant_a.owner_password, "new_password": "short"},
        headers=tenant_a.owner,
    )
    assert short.status_code == 422
    assert "at least 12" in short.json()["detail"]
    by_key = await client.post(
        url,
        json={"current_password": tenant_a.owner_password, "new_password": new},
        headers=tenant_a.api_key,
    )
    assert by_key.status_code == 403
    assert by_key.json()["code"] == "password_needs_login"

    changed = await client.post(
        url,
        json={"current_password": tenant_a.owner_password, "new_password": new},
        headers=tenant_a.owner,
    )
    assert changed.status_code == 204, changed.text
    old = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password},
    )
    assert old.status_code == 401
    fresh = {"Authorization": f"Bearer {await login(client, tenant_a.owner_email, new)}"}
    audit = await client.get(
        "/api/v1/admin/audit", params={"action": "user.password_change"}, headers=fresh
    )
    assert audit.json()["total"] == 1
    assert "a-brand-new" not in audit.text
