"""Finding 1: a tenant admin set the password of a global identity that another tenant later used.

The attack from the issue, over HTTP: tenant B's admin key adds `cfo@victim.example` with a
password of B's choosing; the platform admin then creates tenant A with that email as owner (or
tenant A invites it); B's admin logs in to A. And the same calls told anyone whether an email
exists anywhere, with its id and display name.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import httpx
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mtai.runtime import Runtime
from mtai.services.invitations import token_digest
from tests.conftest import AdminFixture, TenantFixture, accept_invitation, invite


def _victim() -> str:
    return f"cfo-{secrets.token_hex(4)}@victim.example"


async def _try_login(client: httpx.AsyncClient, email: str, password: str, tenant: str) -> int:
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        headers={"X-Tenant-ID": tenant},
    )
    return response.status_code


async def test_another_tenants_admin_cannot_preset_the_owners_password(
    client: httpx.AsyncClient, tenant_b: TenantFixture, platform_admin: AdminFixture
) -> None:
    victim, attacker_password = _victim(), "chosen-by-tenant-b-admin"
    # B's admin-scoped API key "adds" the victim with a password of its choice.
    await client.post(
        "/api/v1/users",
        json={"email": victim, "password": attacker_password, "role": "member"},
        headers=tenant_b.api_key,
    )
    # Later the platform admin creates tenant A with the victim as owner.
    slug = f"victim-{secrets.token_hex(3)}"
    created = await client.post(
        "/api/v1/tenants/",
        json={"slug": slug, "name": "Victim Inc", "owner_email": victim},
        headers=platform_admin.headers,
    )
    assert created.status_code == 201, created.text
    # B's admin must not get into A with the password they chose.
    assert await _try_login(client, victim, attacker_password, slug) != 200
    assert "password" not in {k.lower() for k in created.json()}


async def test_a_squatted_identity_gets_nothing_without_the_invitations_token(
    client: httpx.AsyncClient, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    """B's admin activates the victim's identity themselves; A's invitation still needs A's."""
    victim, attacker_password = _victim(), "chosen-by-tenant-b-admin"
    squat = await invite(client, tenant_b.api_key, victim, "member")
    await accept_invitation(client, squat["token"], attacker_password)
    a_invite = await invite(client, tenant_a.owner, victim, "admin")
    # Logging in to A as the victim: not a member until the invitation is accepted.
    assert await _try_login(client, victim, attacker_password, tenant_a.slug) == 403
    login = await client.post(
        "/api/v1/auth/login", json={"email": victim, "password": attacker_password}
    )
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    # The squatter never proved the address is theirs (B's admin saw the token they used):
    # which tenants invite it is not theirs to learn.
    pending = await client.get("/api/v1/auth/invitations", headers=bearer)
    assert pending.status_code == 200
    assert pending.json() == []
    assert a_invite["id"] not in pending.text
    # Reusing B's used token, or guessing, does not attach A's membership.
    for token in (squat["token"], "inv_" + secrets.token_urlsafe(32)):
        reused = await client.post(
            "/api/v1/invitations/accept", json={"token": token}, headers=bearer
        )
        assert reused.status_code == 410, reused.text
    assert await _try_login(client, victim, attacker_password, tenant_a.slug) == 403
    # The real person, holding A's token and unable to log in as the squatter, is told to log in:
    # the token is not consumed and no password is replaced.
    refused = await client.post(
        "/api/v1/invitations/accept",
        json={"token": a_invite["token"], "password": "the-real-cfo-password"},
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "login_to_accept"
    assert await _try_login(client, victim, "the-real-cfo-password", tenant_a.slug) == 401


async def test_invitation_answers_look_the_same_for_existing_and_new_emails(
    client: httpx.AsyncClient, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    existing = await client.post(
        "/api/v1/invitations", json={"email": tenant_b.owner_email}, headers=tenant_a.api_key
    )
    fresh = await client.post(
        "/api/v1/invitations", json={"email": _victim()}, headers=tenant_a.api_key
    )
    assert existing.status_code == fresh.status_code == 201
    assert existing.headers["content-type"] == fresh.headers["content-type"]
    one, other = existing.json(), fresh.json()
    assert (
        list(one)
        == list(other)
        == [
            "id",
            "email",
            "role",
            "status",
            "expires_at",
            "token",
            "accept_url",
        ]
    )
    assert {k: type(v) for k, v in one.items()} == {k: type(v) for k, v in other.items()}
    assert one["status"] == other["status"] == "pending"
    assert len(one["token"]) == len(other["token"])
    # Nothing of tenant B's identity comes back: not its id, not its display name.
    owner_id = (await client.get("/api/v1/auth/me", headers=tenant_b.owner)).json()["user_id"]
    assert owner_id not in existing.text
    # The old path answered with the foreign identity's id: it must not exist any more.
    old = await client.post(
        "/api/v1/users", json={"email": tenant_b.owner_email}, headers=tenant_a.api_key
    )
    assert old.status_code == 410
    assert owner_id not in old.text


async def test_an_admin_cannot_replace_an_owners_pending_owner_invitation(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    """Admins may not revoke an owner invitation; re-inviting the email must not do it either
    (it replaced the owner's token and turned the invitation into the admin's own, as member)."""
    person = _victim()
    owners = await invite(client, tenant_a.owner, person, "owner")
    again = await client.post(
        "/api/v1/invitations", json={"email": person, "role": "member"}, headers=tenant_a.api_key
    )
    assert again.status_code == 403, again.text
    assert again.json()["code"] == "owner_required"
    still = await client.post("/api/v1/invitations/lookup", json={"token": owners["token"]})
    assert still.status_code == 200, still.text
    assert still.json()["role"] == "owner"


async def test_racing_accepts_use_a_token_once_and_make_one_identity(
    client: httpx.AsyncClient, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    """Two accepts of one token at once, and two tenants' tokens for one new email at once:
    one wins; the other is refused with a 4xx (never a 500, never a second identity)."""
    person = _victim()
    one = await invite(client, tenant_a.owner, person, "member")

    async def accept(token: str, password: str) -> httpx.Response:
        return await client.post(
            "/api/v1/invitations/accept", json={"token": token, "password": password}
        )

    twice = await asyncio.gather(*(accept(one["token"], f"password-{n}-chosen") for n in range(4)))
    assert sorted(r.status_code for r in twice) == [200, 410, 410, 410], [r.text for r in twice]

    other = _victim()
    to_a = await invite(client, tenant_a.owner, other, "member")
    to_b = await invite(client, tenant_b.owner, other, "member")
    both = await asyncio.gather(
        accept(to_a["token"], "password-for-a-only"), accept(to_b["token"], "password-for-b-only")
    )
    codes = sorted(r.status_code for r in both)
    assert codes[0] == 200, [r.text for r in both]
    assert 400 <= codes[1] < 500, [r.text for r in both]
    winner = next(r for r in both if r.status_code == 200).json()["user"]
    assert [t["slug"] for t in winner["tenants"]] in ([tenant_a.slug], [tenant_b.slug])


async def test_a_tenant_transaction_cannot_mint_a_platform_administrator(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    """SQL run through a tenant connection (finding 11's attacker) writes an invitation of its
    own tenant with platform_admin set and a token it knows; accepting it made a platform admin."""
    token, email = "inv_" + secrets.token_urlsafe(32), _victim()
    with contextlib.suppress(DBAPIError):
        async with runtime.db.tenant(tenant_a.id) as session:
            await session.execute(
                text(
                    "INSERT INTO invitations (id, tenant_id, email, role, platform_admin, "
                    "token_hash, expires_at) VALUES (gen_random_uuid(), :tenant, :email, "
                    "'member', true, :hash, now() + interval '1 day')"
                ),
                {"tenant": tenant_a.id, "email": email, "hash": token_digest(token)},
            )
    await client.post(
        "/api/v1/invitations/accept", json={"token": token, "password": "attacker-password"}
    )
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": "attacker-password", "platform": True},
    )
    assert login.status_code != 200, login.text
    async with runtime.db.platform() as session:
        admins = await session.execute(
            text("SELECT count(*) FROM users WHERE email = :email AND is_platform_admin"),
            {"email": email},
        )
        assert admins.scalar_one() == 0
