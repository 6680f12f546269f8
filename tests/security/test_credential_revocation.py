"""Finding 10: a token survived a password change; no disable; a removed admin's keys worked."""

from __future__ import annotations

import secrets

import httpx

from mtai.runtime import Runtime
from tests.conftest import AdminFixture, TenantFixture, accept_invitation, invite, login


async def _status(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def test_a_password_change_ends_every_older_session(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    stolen = await login(client, tenant_a.owner_email, tenant_a.owner_password)
    changed = await client.post(
        "/api/v1/auth/password",
        json={"current_password": tenant_a.owner_password, "new_password": "a-brand-new-secret"},
        headers=tenant_a.owner,
    )
    assert changed.status_code == 204
    assert await _status(client, stolen) == 401
    assert await _status(client, tenant_a.owner_token) == 401
    fresh = await login(client, tenant_a.owner_email, "a-brand-new-secret")
    assert await _status(client, fresh) == 200


async def test_a_disabled_identity_loses_its_sessions_and_cannot_log_in(
    client: httpx.AsyncClient, tenant_a: TenantFixture, platform_admin: AdminFixture
) -> None:
    disabled = await client.post(
        "/api/v1/admin/identities/disable",
        json={"email": tenant_a.owner_email},
        headers=platform_admin.headers,
    )
    assert disabled.status_code == 204, disabled.text
    assert await _status(client, tenant_a.owner_token) == 401
    refused = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password},
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "account_disabled"
    # A tenant admin cannot lock a person out of other tenants.
    forbidden = await client.post(
        "/api/v1/admin/identities/enable",
        json={"email": tenant_a.owner_email},
        headers=tenant_a.api_key,
    )
    assert forbidden.status_code == 403
    enabled = await client.post(
        "/api/v1/admin/identities/enable",
        json={"email": tenant_a.owner_email},
        headers=platform_admin.headers,
    )
    assert enabled.status_code == 204
    assert await _status(client, tenant_a.owner_token) == 401  # old sessions stay ended
    await login(client, tenant_a.owner_email, tenant_a.owner_password)


async def test_removing_the_last_membership_ends_the_sessions(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    removed = await client.delete(f"/api/v1/users/{tenant_a.member_id}", headers=tenant_a.owner)
    assert removed.status_code == 204
    response = await client.get("/api/v1/auth/me", headers=tenant_a.member)
    assert response.status_code == 401
    assert response.json()["code"] == "token_revoked"


async def test_sign_out_everywhere_and_an_admins_sign_out(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    second = await login(client, tenant_a.owner_email, tenant_a.owner_password)
    out = await client.post("/api/v1/auth/sign-out-everywhere", headers=tenant_a.owner)
    assert out.status_code == 204
    assert await _status(client, second) == 401
    assert await _status(client, tenant_a.owner_token) == 401
    # A tenant admin ends a member's sessions.
    assert await _status(client, tenant_a.member_token) == 200
    ended = await client.post(
        f"/api/v1/users/{tenant_a.member_id}/sign-out", headers=tenant_a.api_key
    )
    assert ended.status_code == 204
    assert await _status(client, tenant_a.member_token) == 401


async def test_keys_made_by_a_removed_admin_are_revoked_unless_kept(
    client: httpx.AsyncClient, tenant_a: TenantFixture, runtime: Runtime
) -> None:
    keys = {}
    for name, keep in (("leaver", False), ("kept", True)):
        email = f"{name}-{secrets.token_hex(3)}@{tenant_a.slug}.example"
        issued = await invite(client, tenant_a.owner, email, "admin")
        token = await accept_invitation(client, issued["token"], "admin-own-password")
        bearer = {"Authorization": f"Bearer {token}"}
        key = await client.post(
            "/api/v1/keys", json={"name": name, "scopes": ["chat", "admin"]}, headers=bearer
        )
        assert key.status_code == 201
        me = (await client.get("/api/v1/auth/me", headers=bearer)).json()
        removed = await client.delete(
            f"/api/v1/users/{me['user_id']}",
            params={"keep_keys": "true"} if keep else None,
            headers=tenant_a.owner,
        )
        assert removed.status_code == 204
        keys[name] = key.json()
    revoked = await client.get("/api/v1/auth/me", headers={"X-API-Key": keys["leaver"]["key"]})
    assert revoked.status_code == 401
    assert revoked.json()["code"] == "api_key_revoked"
    kept = await client.get("/api/v1/auth/me", headers={"X-API-Key": keys["kept"]["key"]})
    assert kept.status_code == 200
    audit = await client.get(
        "/api/v1/admin/audit", params={"action": "api_key.revoke"}, headers=tenant_a.owner
    )
    events = [e for e in audit.json()["items"] if e["target_id"] == keys["leaver"]["id"]]
    assert len(events) == 1
    assert events[0]["details"]["reason"] == "creator_removed"


async def test_keys_a_removed_admin_made_with_their_own_keys_are_revoked_too(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    """The leaver's login makes one admin key, that key makes another and rotates a third: all
    of them were the leaver's, but only the first named its creator and was revoked."""
    email = f"chain-{secrets.token_hex(3)}@{tenant_a.slug}.example"
    issued = await invite(client, tenant_a.owner, email, "admin")
    token = await accept_invitation(client, issued["token"], "leaver-own-password")
    bearer = {"Authorization": f"Bearer {token}"}
    scopes = {"scopes": ["chat", "admin"]}
    first = await client.post("/api/v1/keys", json={"name": "first", **scopes}, headers=bearer)
    assert first.status_code == 201, first.text
    as_key = {"X-API-Key": first.json()["key"]}
    made = await client.post("/api/v1/keys", json={"name": "second", **scopes}, headers=as_key)
    assert made.status_code == 201, made.text
    spare = await client.post("/api/v1/keys", json={"name": "third", **scopes}, headers=bearer)
    rotated = await client.post(f"/api/v1/keys/{spare.json()['id']}/rotate", headers=as_key)
    assert rotated.status_code in (200, 201), rotated.text
    me = (await client.get("/api/v1/auth/me", headers=bearer)).json()
    removed = await client.delete(f"/api/v1/users/{me['user_id']}", headers=tenant_a.owner)
    assert removed.status_code == 204
    for key in (first.json(), made.json(), rotated.json()):
        answer = await client.get("/api/v1/auth/me", headers={"X-API-Key": key["key"]})
        assert answer.status_code == 401, (key["name"], answer.text)


async def test_invitations_a_removed_admin_issued_die_with_the_membership(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    """Before leaving, an admin invites a second address of theirs as admin and keeps the token;
    after the removal they accepted it and were back as admin."""
    email = f"leaver-{secrets.token_hex(3)}@{tenant_a.slug}.example"
    issued = await invite(client, tenant_a.owner, email, "admin")
    token = await accept_invitation(client, issued["token"], "leaver-own-password")
    bearer = {"Authorization": f"Bearer {token}"}
    key = await client.post(
        "/api/v1/keys", json={"name": "k", "scopes": ["chat", "admin"]}, headers=bearer
    )
    backdoors = [
        await invite(client, headers, f"alt-{secrets.token_hex(3)}@elsewhere.example", "admin")
        for headers in (bearer, {"X-API-Key": key.json()["key"]})  # their login, their key
    ]
    me = (await client.get("/api/v1/auth/me", headers=bearer)).json()
    removed = await client.delete(f"/api/v1/users/{me['user_id']}", headers=tenant_a.owner)
    assert removed.status_code == 204
    pending = await client.get("/api/v1/invitations", headers=tenant_a.owner)
    for backdoor in backdoors:
        back = await client.post(
            "/api/v1/invitations/accept",
            json={"token": backdoor["token"], "password": "back-in-as-admin"},
        )
        assert back.status_code == 410, back.text
        assert backdoor["id"] not in {i["id"] for i in pending.json()["items"]}
