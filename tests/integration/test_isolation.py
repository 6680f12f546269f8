"""The isolation suite: tenant A, with every credential it has, against tenant B's ids.

Every route that takes an id gets a line in CASES; later features add theirs the same way.
Expected: 404 (B's objects do not exist for A), and B's data unchanged afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mtai.db.models import ApiKey, AuditEvent, Membership, Tenant
from mtai.runtime import Runtime
from tests.conftest import TenantFixture


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # {tenant_id}, {member_id}, {key_id} are filled with the victim's ids
    body: dict[str, Any] | None = None
    expect: int = 404


CASES = [
    Case("GET", "/api/v1/users/{member_id}"),
    Case("PATCH", "/api/v1/users/{member_id}", {"role": "admin"}),
    Case("DELETE", "/api/v1/users/{member_id}"),
    Case("GET", "/api/v1/keys/{key_id}"),
    Case("POST", "/api/v1/keys/{key_id}/revoke"),
    Case("DELETE", "/api/v1/keys/{key_id}"),
    Case("POST", "/api/v1/keys/{key_id}/rotate", {}),
    # Platform-only routes refuse every tenant credential alike (403 for any id, own included),
    # which reveals nothing about whether the id exists.
    Case("GET", "/api/v1/tenants/{tenant_id}", expect=403),
    Case("PATCH", "/api/v1/tenants/{tenant_id}", {"name": "x"}, expect=403),
    Case("POST", "/api/v1/tenants/{tenant_id}/suspend", expect=403),
    Case("POST", "/api/v1/tenants/{tenant_id}/reactivate", expect=403),
    Case("DELETE", "/api/v1/tenants/{tenant_id}", expect=403),
]

LISTS = ["/api/v1/users", "/api/v1/keys", "/api/v1/admin/audit"]


async def snapshot(runtime: Runtime, tenant: TenantFixture) -> dict[str, Any]:
    async with runtime.db.platform() as session:
        t = await session.get(Tenant, tenant.id)
        assert t is not None
        members = (
            await session.execute(
                select(Membership.user_id, Membership.role).where(Membership.tenant_id == tenant.id)
            )
        ).all()
        keys = (
            await session.execute(
                select(ApiKey.id, ApiKey.name, ApiKey.revoked_at, ApiKey.expires_at).where(
                    ApiKey.tenant_id == tenant.id
                )
            )
        ).all()
        events = (
            await session.execute(select(AuditEvent.id).where(AuditEvent.tenant_id == tenant.id))
        ).all()
    return {
        "tenant": (t.name, t.status, t.settings),
        "members": sorted(map(tuple, members)),
        "keys": sorted(map(tuple, keys)),
        "events": len(events),
    }


def credentials(tenant: TenantFixture) -> dict[str, dict[str, str]]:
    return {"owner token": tenant.owner, "admin API key": tenant.api_key}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
async def test_other_tenants_ids_are_not_found(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    case: Case,
) -> None:
    before = await snapshot(runtime, tenant_b)
    path = case.path.format(
        tenant_id=tenant_b.id, member_id=tenant_b.member_id, key_id=tenant_b.key_id
    )
    for name, headers in credentials(tenant_a).items():
        response = await client.request(case.method, path, json=case.body, headers=headers)
        assert response.status_code == case.expect, (name, response.text)
        assert str(tenant_b.id) not in response.text or case.expect == 403
        assert response.json()["code"] in ("not_found", "platform_admin_required")
    assert await snapshot(runtime, tenant_b) == before
    # B still works with its own credentials.
    assert (await client.get("/api/v1/auth/me", headers=tenant_b.api_key)).status_code == 200


@pytest.mark.parametrize("path", LISTS)
async def test_lists_show_only_own_tenant(
    client: httpx.AsyncClient, tenant_a: TenantFixture, tenant_b: TenantFixture, path: str
) -> None:
    for headers in credentials(tenant_a).values():
        response = await client.get(path, params={"limit": 200}, headers=headers)
        assert response.status_code == 200
        text = response.text
        for foreign in (tenant_b.id, tenant_b.member_id, tenant_b.key_id):
            assert str(foreign) not in text
        assert tenant_b.owner_email not in text


async def test_suite_covers_every_route_with_an_id(app: Any) -> None:
    """Adding a route that takes an id without an isolation case fails here."""
    covered = {(c.method, re.sub(r"\{[^}]+\}", "{}", c.path)) for c in CASES}
    for route in app.routes:
        path = getattr(route, "path", "")
        if "{" not in path:
            continue
        for method in getattr(route, "methods", set()) - {"HEAD", "OPTIONS"}:
            template = re.sub(r"\{[^}]+\}", "{}", path)
            assert (method, template) in covered, f"no isolation case for {method} {path}"
