"""Bad input of every kind gets a 4xx in the one error shape; never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import AdminFixture, TenantFixture

SQLISH = ["' OR '1'='1", "'; DROP TABLE tenants; --", "1; SELECT pg_sleep(5)", "\\x00\\x27"]


def assert_error_shape(response: httpx.Response, status: int | tuple[int, ...]) -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, response.text
    body = response.json()
    assert set(body) >= {"detail", "code", "request_id"}
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "content",
    [b"{", b"not json", b"[]", b"null", b'{"email": 1, "password": []}', b"\xff\xfe", b""],
    ids=["truncated", "text", "array", "null", "wrong-types", "bad-utf8", "empty"],
)
async def test_malformed_login_bodies(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=content, headers={"content-type": "application/json"}
    )
    assert_error_shape(response, 422)


async def test_unknown_fields_are_rejected(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    response = await client.post(
        "/api/v1/keys",
        json={"name": "k", "scopes": ["chat"], "tenant_id": "x"},
        headers=tenant_a.owner,
    )
    assert_error_shape(response, 422)
    assert "tenant_id" in response.json()["detail"]


async def test_validation_errors_never_echo_passwords(client: httpx.AsyncClient) -> None:
    secret = "hunter2-but-longer-secret"
    response = await client.post(
        "/api/v1/auth/login", json={"email": "not-an-email", "password": secret}
    )
    assert_error_shape(response, 422)
    assert secret not in response.text


async def test_huge_bodies_are_413(client: httpx.AsyncClient, tenant_a: TenantFixture) -> None:
    big = "x" * (2 * 1024 * 1024)
    declared = await client.post(
        "/api/v1/keys", json={"name": big, "scopes": ["chat"]}, headers=tenant_a.owner
    )
    assert_error_shape(declared, 413)

    async def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(40):
            yield b"x" * 65536

    streamed = await client.post(
        "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error_shape(streamed, 413)


async def test_sql_looking_strings_are_just_strings(
    client: httpx.AsyncClient, tenant_a: TenantFixture, platform_admin: AdminFixture
) -> None:
    for value in SQLISH:
        login = await client.post(
            "/api/v1/auth/login", json={"email": f"{value}@x.io", "password": value}
        )
        assert_error_shape(login, (401, 422))
        key = await client.post(
            "/api/v1/keys", json={"name": value, "scopes": ["chat"]}, headers=tenant_a.owner
        )
        assert key.status_code == 201
        assert key.json()["name"] == value
        audit = await client.get(
            "/api/v1/admin/audit", params={"action": value}, headers=tenant_a.owner
        )
        assert audit.status_code == 200
        assert audit.json()["items"] == []
        tenant = await client.get(
            "/api/v1/auth/me", headers={**platform_admin.headers, "X-Tenant-ID": value}
        )
        assert_error_shape(tenant, 404)
        slug = await client.post(
            "/api/v1/tenants/", json={"slug": value, "name": value}, headers=platform_admin.headers
        )
        assert_error_shape(slug, 422)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/users/not-a-uuid"),
        ("GET", "/api/v1/keys/123"),
        ("POST", "/api/v1/keys/%27%20OR%201=1/revoke"),
        ("GET", "/api/v1/tenants/zzz"),
    ],
)
async def test_garbled_ids_are_422(
    client: httpx.AsyncClient,
    platform_admin: AdminFixture,
    tenant_a: TenantFixture,
    method: str,
    path: str,
) -> None:
    headers = platform_admin.headers if "tenants" in path else tenant_a.owner
    assert_error_shape(await client.request(method, path, headers=headers), 422)


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 100000}, {"offset": -1}, {"limit": "ten"}, {"status": "deleted"}],
)
async def test_bad_paging(
    client: httpx.AsyncClient, platform_admin: AdminFixture, params: dict[str, object]
) -> None:
    response = await client.get("/api/v1/tenants/", params=params, headers=platform_admin.headers)
    assert_error_shape(response, 422)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"X-API-Key": ""},
        {"Authorization": "Bearer " + "a" * 5000},
        {},
    ],
)
async def test_bad_credentials_are_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert_error_shape(await client.get("/api/v1/auth/me", headers=headers), 401)


async def test_wrong_types_and_ranges(client: httpx.AsyncClient, tenant_a: TenantFixture) -> None:
    cases = [
        {"name": "", "scopes": ["chat"]},
        {"name": "k", "scopes": []},
        {"name": "k", "scopes": "chat"},
        {"name": 5, "scopes": ["chat"]},
        {"name": "k", "scopes": ["chat"], "expires_at": "tomorrow"},
        {"name": "k", "scopes": ["chat"], "expires_at": "2030-01-01T00:00:00"},  # no time zone
    ]
    for body in cases:
        assert_error_shape(
            await client.post("/api/v1/keys", json=body, headers=tenant_a.owner), 422
        )
    rotate = await client.post(
        f"/api/v1/keys/{tenant_a.key_id}/rotate", json={"grace_seconds": -5}, headers=tenant_a.owner
    )
    assert_error_shape(rotate, 422)
    role = await client.patch(
        f"/api/v1/users/{tenant_a.member_id}", json={"role": "god"}, headers=tenant_a.owner
    )
    assert_error_shape(role, 422)


async def test_method_not_allowed_has_error_shape(client: httpx.AsyncClient) -> None:
    assert_error_shape(await client.put("/api/v1/auth/login", json={}), 405)
