"""API keys: shown once, hashed at rest, scoped, revocable, rotatable with grace, expiring."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from mtai.db.models import ApiKey
from mtai.runtime import Runtime
from mtai.services import key_material
from tests.conftest import TenantFixture


async def test_key_is_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    created = await client.post(
        "/api/v1/keys", json={"name": "deploy", "scopes": ["chat"]}, headers=tenant_a.owner
    )
    assert created.status_code == 201
    body = created.json()
    plaintext = body["key"]
    assert plaintext.startswith("mtai_")
    assert key_material.prefix_of(plaintext) == body["prefix"]
    listed = await client.get("/api/v1/keys", headers=tenant_a.owner)
    assert plaintext not in listed.text
    assert all("key" not in item for item in listed.json()["items"])
    fetched = await client.get(f"/api/v1/keys/{body['id']}", headers=tenant_a.owner)
    assert plaintext not in fetched.text
    async with runtime.db.tenant(tenant_a.id) as session:
        row = (
            await session.execute(select(ApiKey).where(ApiKey.id == fetched.json()["id"]))
        ).scalar_one()
    assert plaintext.encode() not in row.key_hash
    assert row.key_hash == key_material.digest(runtime.auth.key_pepper, plaintext)


async def test_scopes_are_enforced(client: httpx.AsyncClient, tenant_a: TenantFixture) -> None:
    chat_only = (
        await client.post(
            "/api/v1/keys", json={"name": "c", "scopes": ["chat"]}, headers=tenant_a.owner
        )
    ).json()["key"]
    refused = await client.get("/api/v1/keys", headers={"X-API-Key": chat_only})
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"
    # A member cannot manage keys at all; an admin-scoped key can, but not grant beyond itself.
    assert (await client.get("/api/v1/keys", headers=tenant_a.member)).status_code == 403
    admin_only = (
        await client.post(
            "/api/v1/keys", json={"name": "a", "scopes": ["admin"]}, headers=tenant_a.owner
        )
    ).json()["key"]
    beyond = await client.post(
        "/api/v1/keys",
        json={"name": "x", "scopes": ["rag:write"]},
        headers={"X-API-Key": admin_only},
    )
    assert beyond.status_code == 403
    unknown = await client.post(
        "/api/v1/keys", json={"name": "x", "scopes": ["superpowers"]}, headers=tenant_a.owner
    )
    assert unknown.status_code == 422


async def test_revoked_key_stops_working_at_once(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    assert (await client.get("/api/v1/auth/me", headers=tenant_a.api_key)).status_code == 200
    revoked = await client.delete(f"/api/v1/keys/{tenant_a.key_id}", headers=tenant_a.owner)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    response = await client.get("/api/v1/auth/me", headers=tenant_a.api_key)
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_revoked"


async def test_rotation_keeps_old_key_for_the_grace_period(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    rotated = await client.post(
        f"/api/v1/keys/{tenant_a.key_id}/rotate", json={"grace_seconds": 2}, headers=tenant_a.owner
    )
    assert rotated.status_code == 201
    new = rotated.json()
    assert new["rotated_from"] == str(tenant_a.key_id)
    assert new["scopes"] == ["admin", "chat", "rag:read", "rag:write"]
    assert (
        await client.get("/api/v1/auth/me", headers={"X-API-Key": new["key"]})
    ).status_code == 200
    # Within grace: the old key still works.
    assert (await client.get("/api/v1/auth/me", headers=tenant_a.api_key)).status_code == 200
    old = (await client.get(f"/api/v1/keys/{tenant_a.key_id}", headers=tenant_a.owner)).json()
    expires = datetime.fromisoformat(old["expires_at"])
    assert expires <= datetime.now(UTC) + timedelta(seconds=3)
    await asyncio.sleep(2.2)
    expired = await client.get("/api/v1/auth/me", headers=tenant_a.api_key)
    assert expired.status_code == 401
    assert expired.json()["code"] == "api_key_expired"
    assert (
        await client.get("/api/v1/auth/me", headers={"X-API-Key": new["key"]})
    ).status_code == 200
    again = await client.post(f"/api/v1/keys/{tenant_a.key_id}/rotate", headers=tenant_a.owner)
    assert again.status_code == 409


async def test_expiry_and_last_used(client: httpx.AsyncClient, tenant_a: TenantFixture) -> None:
    past = await client.post(
        "/api/v1/keys",
        json={"name": "p", "scopes": ["chat"], "expires_at": "2020-01-01T00:00:00Z"},
        headers=tenant_a.owner,
    )
    assert past.status_code == 422
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    short = await client.post(
        "/api/v1/keys",
        json={"name": "s", "scopes": ["chat"], "expires_at": soon},
        headers=tenant_a.owner,
    )
    assert short.status_code == 201
    key = short.json()["key"]
    assert (await client.get("/api/v1/auth/me", headers={"X-API-Key": key})).status_code == 200
    await asyncio.sleep(0.5)  # the batched last-used writer runs every 0.2 s in tests
    listed = (await client.get(f"/api/v1/keys/{short.json()['id']}", headers=tenant_a.owner)).json()
    assert listed["last_used_at"] is not None
    await asyncio.sleep(1.0)
    assert (await client.get("/api/v1/auth/me", headers={"X-API-Key": key})).status_code == 401


async def test_malformed_keys_are_401_not_500(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    prefix = key_material.prefix_of(tenant_a.key)
    candidates = [
        "mtai_",
        "mtai_short_x",
        f"mtai_{prefix}_{'A' * 43}",  # right prefix, wrong secret
        "mtai_" + "Z" * 12 + "_" + "Q" * 43,  # unknown prefix
        tenant_a.key + "x",
        "mtai_' OR 1=1 --",
    ]
    for candidate in candidates:
        response = await client.get("/api/v1/auth/me", headers={"X-API-Key": candidate})
        assert response.status_code == 401, candidate
        assert response.json()["code"] == "invalid_api_key"
