"""Finding 12 (cache): the response cache is per principal unless the tenant opts into sharing,
and only admin-scoped callers see `X-Mtai-Cache`.

The attack: a member of a tenant with caching on asks what a colleague asked and reads the
colleague's answer from the cache (and the hit/miss header tells them what others asked).
"""

from __future__ import annotations

import secrets

import httpx

from tests.conftest import AdminFixture, TenantFixture


async def enable_cache(
    client: httpx.AsyncClient, admin: AdminFixture, tenant: TenantFixture, *, shared: bool
) -> None:
    patched = await client.patch(
        f"/api/v1/tenants/{tenant.id}",
        json={"settings": {"cache_enabled": True, "cache_shared": shared}},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text


async def ask(client: httpx.AsyncClient, headers: dict[str, str], message: str) -> httpx.Response:
    response = await client.post(
        "/api/v1/chat/",
        json={"message": message, "model": "extractive", "cache": True},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response


async def test_two_users_of_a_tenant_do_not_share_cached_answers(
    client: httpx.AsyncClient, tenant_a: TenantFixture, platform_admin: AdminFixture
) -> None:
    await enable_cache(client, platform_admin, tenant_a, shared=False)
    question = f"What is our merger code name? {secrets.token_hex(4)}"
    assert not (await ask(client, tenant_a.owner, question)).json()["cached"]
    assert (await ask(client, tenant_a.owner, question)).json()["cached"]  # the asker's own
    assert not (await ask(client, tenant_a.member, question)).json()["cached"]
    assert not (await ask(client, tenant_a.api_key, question)).json()["cached"]


async def test_a_tenant_can_opt_into_a_shared_cache(
    client: httpx.AsyncClient, tenant_a: TenantFixture, platform_admin: AdminFixture
) -> None:
    await enable_cache(client, platform_admin, tenant_a, shared=True)
    question = f"Opening hours? {secrets.token_hex(4)}"
    assert not (await ask(client, tenant_a.owner, question)).json()["cached"]
    assert (await ask(client, tenant_a.member, question)).json()["cached"]


async def test_only_admin_scoped_callers_see_the_cache_header(
    client: httpx.AsyncClient, tenant_a: TenantFixture, platform_admin: AdminFixture
) -> None:
    await enable_cache(client, platform_admin, tenant_a, shared=True)
    question = f"Holiday policy? {secrets.token_hex(4)}"
    member = await ask(client, tenant_a.member, question)
    assert "x-mtai-cache" not in member.headers
    owner = await ask(client, tenant_a.owner, question)
    assert owner.headers["x-mtai-cache"] == "hit"
    body = {"model": "extractive", "messages": [{"role": "user", "content": question}]}
    as_member = await client.post(
        "/v1/chat/completions", json=body, headers={**tenant_a.member, "X-Mtai-Cache": "use"}
    )
    assert as_member.status_code == 200, as_member.text
    assert "x-mtai-cache" not in as_member.headers
    as_admin_key = await client.post(
        "/v1/chat/completions", json=body, headers={**tenant_a.api_key, "X-Mtai-Cache": "use"}
    )
    assert as_admin_key.headers["x-mtai-cache"] == "hit"
