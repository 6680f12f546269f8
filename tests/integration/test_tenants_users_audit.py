"""Tenant administration (platform admins), user and role management, the audit trail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from mtai.db.models import Invitation
from mtai.runtime import Runtime
from tests.conftest import AdminFixture, TenantFixture, accept_invitation, invite, login


async def all_tenant_ids(
    client: httpx.AsyncClient, headers: dict[str, str], **query: str
) -> set[str]:
    """Every page of the tenant list (the whole suite's tenants share this database)."""
    ids: set[str] = set()
    for offset in range(0, 100_000, 200):
        page = await client.get(
            "/api/v1/tenants/", params={"limit": 200, "offset": offset, **query}, headers=headers
        )
        items = page.json()["items"]
        ids |= {t["id"] for t in items}
        if len(items) < 200:
            break
    return ids


async def test_tenant_crud_by_platform_admin(
    client: httpx.AsyncClient, platform_admin: AdminFixture
) -> None:
    h = platform_admin.headers
    created = await client.post(
        "/api/v1/tenants/",
        json={
            "slug": "acme-corp",
            "name": "Acme",
            "settings": {"tier": "gold"},
            "owner_email": "boss@acme.example",
        },
        headers=h,
    )
    assert created.status_code == 201, created.text
    tenant = created.json()
    assert tenant["status"] == "active"
    invitation = tenant["owner_invitation"]
    assert (invitation["email"], invitation["role"]) == ("boss@acme.example", "owner")
    assert "password" not in created.text
    # The owner accepts, choosing their own password.
    await accept_invitation(client, invitation["token"], "the-bosses-own-password")
    await login(client, "boss@acme.example", "the-bosses-own-password")
    dup = await client.post(
        "/api/v1/tenants/", json={"slug": "acme-corp", "name": "Again"}, headers=h
    )
    assert dup.status_code == 409
    fetched = await client.get(f"/api/v1/tenants/{tenant['id']}", headers=h)
    assert fetched.json()["settings"] == {"tier": "gold"}
    patched = await client.patch(
        f"/api/v1/tenants/{tenant['id']}", json={"name": "Acme Inc"}, headers=h
    )
    assert patched.json()["name"] == "Acme Inc"
    assert patched.json()["settings"] == {"tier": "gold"}
    assert tenant["id"] in await all_tenant_ids(client, h)
    assert tenant["id"] not in await all_tenant_ids(client, h, status="suspended")
    assert (await client.delete(f"/api/v1/tenants/{tenant['id']}", headers=h)).status_code == 204
    assert (await client.get(f"/api/v1/tenants/{tenant['id']}", headers=h)).status_code == 404


async def test_tenants_api_is_platform_admin_only(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    for credential in (tenant_a.owner, tenant_a.api_key, tenant_a.member):
        assert (await client.get("/api/v1/tenants/", headers=credential)).status_code == 403
        created = await client.post(
            "/api/v1/tenants/", json={"slug": "sneaky", "name": "x"}, headers=credential
        )
        assert created.status_code == 403
        own = await client.post(f"/api/v1/tenants/{tenant_a.id}/suspend", headers=credential)
        assert own.status_code == 403


async def test_user_management_and_role_rules(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    owner = tenant_a.owner
    gone = await client.post(
        "/api/v1/users", json={"email": "ada@example.com", "password": "x" * 12}, headers=owner
    )
    assert gone.status_code == 410
    assert gone.json()["code"] == "use_invitations"
    invited = await invite(client, owner, "Ada@Example.COM", "admin")
    assert invited["email"] == "ada@example.com"
    ada_token = await accept_invitation(client, invited["token"], "ada-own-password")
    ada_h = {"Authorization": f"Bearer {ada_token}"}
    # An admin manages members, but cannot invite, change or remove owners.
    assert (
        await client.post(
            "/api/v1/invitations", json={"email": "o2@example.com", "role": "owner"}, headers=ada_h
        )
    ).status_code == 403
    users = (await client.get("/api/v1/users", headers=ada_h)).json()
    owner_id = next(u["id"] for u in users["items"] if u["role"] == "owner")
    assert (
        await client.patch(f"/api/v1/users/{owner_id}", json={"role": "member"}, headers=ada_h)
    ).status_code == 403
    promoted = await client.patch(
        f"/api/v1/users/{tenant_a.member_id}", json={"role": "admin"}, headers=ada_h
    )
    assert promoted.json()["role"] == "admin"
    # The last owner cannot step down.
    last = await client.patch(f"/api/v1/users/{owner_id}", json={"role": "admin"}, headers=owner)
    assert last.status_code == 409
    assert (await client.delete(f"/api/v1/users/{owner_id}", headers=owner)).status_code == 409
    dup = await client.post("/api/v1/invitations", json={"email": "ada@example.com"}, headers=owner)
    assert dup.status_code == 409
    assert dup.json()["code"] == "already_a_member"
    weak_invite = await invite(client, owner, "w@example.com")
    weak = await client.post(
        "/api/v1/invitations/accept",
        json={"token": weak_invite["token"], "password": "short"},
    )
    assert weak.status_code == 422
    # The invitation is still pending after a refused accept, and can be revoked.
    pending = (await client.get("/api/v1/invitations", headers=owner)).json()
    assert [i["email"] for i in pending["items"]] == ["w@example.com"]
    revoked = await client.delete(f"/api/v1/invitations/{weak_invite['id']}", headers=owner)
    assert revoked.status_code == 204
    used = await client.post(
        "/api/v1/invitations/accept",
        json={"token": weak_invite["token"], "password": "long-enough-now"},
    )
    assert used.status_code == 410
    assert used.json()["code"] == "invitation_invalid"


async def test_member_role_cannot_manage_users(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    response = await client.get("/api/v1/users", headers=tenant_a.member)
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


async def test_audit_records_changes_for_the_right_viewers(
    client: httpx.AsyncClient,
    platform_admin: AdminFixture,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
) -> None:
    await client.post(f"/api/v1/keys/{tenant_a.key_id}/revoke", headers=tenant_a.owner)
    events = (await client.get("/api/v1/admin/audit", headers=tenant_a.owner)).json()
    actions = [e["action"] for e in events["items"]]
    assert actions[0] == "api_key.revoke"
    joined = {"tenant.create", "invitation.create", "invitation.accept", "api_key.create"}
    assert joined <= set(actions)
    assert all(e["tenant_id"] == str(tenant_a.id) for e in events["items"])
    revoke = events["items"][0]
    assert revoke["target_id"] == str(tenant_a.key_id)
    assert revoke["actor_type"] == "user"
    assert revoke["request_id"]
    filtered = (
        await client.get(
            "/api/v1/admin/audit", params={"action": "invitation.accept"}, headers=tenant_a.owner
        )
    ).json()
    assert {e["action"] for e in filtered["items"]} == {"invitation.accept"}
    assert (await client.get("/api/v1/admin/audit", headers=tenant_a.member)).status_code == 403
    everything = (
        await client.get(
            "/api/v1/admin/audit", params={"limit": 200}, headers=platform_admin.headers
        )
    ).json()
    tenants_seen = {e["tenant_id"] for e in everything["items"]}
    assert {str(tenant_a.id), str(tenant_b.id)} <= tenants_seen


async def test_reinviting_replaces_the_token_and_expired_invitations_are_refused(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    first = await invite(client, tenant_a.owner, "late@example.com", "member")
    second = await invite(client, tenant_a.api_key, "late@example.com", "admin")
    assert second["id"] == first["id"]
    assert second["token"] != first["token"]
    old = await client.post("/api/v1/invitations/lookup", json={"token": first["token"]})
    assert old.status_code == 410
    looked = await client.post("/api/v1/invitations/lookup", json={"token": second["token"]})
    assert looked.status_code == 200
    assert looked.json()["role"] == "admin"
    assert looked.json()["tenant"]["slug"] == tenant_a.slug
    async with runtime.db.platform() as session:
        invitation = await session.get(Invitation, uuid.UUID(second["id"]))
        assert invitation is not None
        invitation.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    expired = await client.post(
        "/api/v1/invitations/accept",
        json={"token": second["token"], "password": "too-late-for-this"},
    )
    assert expired.status_code == 410
    assert expired.json()["code"] == "invitation_invalid"
    pending = (await client.get("/api/v1/invitations", headers=tenant_a.owner)).json()
    assert second["id"] not in {i["id"] for i in pending["items"]}
