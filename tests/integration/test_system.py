from __future__ import annotations

import httpx


async def test_ping_is_pong(client: httpx.AsyncClient) -> None:
    response = await client.get("/ping")
    assert response.status_code == 200
    assert response.json() == "pong"


async def test_healthz_has_no_dependencies(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_health_reports_database(client: httpx.AsyncClient) -> None:
    body = (await client.get("/health")).json()
    assert body["status"] == "healthy"
    assert body["service"] == "multitenant-ai"
    assert body["checks"]["database"]["status"] == "ok"


async def test_root_and_docs(client: httpx.AsyncClient) -> None:
    root = (await client.get("/")).json()
    assert set(root) == {"message", "version", "docs"}
    assert (await client.get("/docs")).status_code == 200
    assert "/api/v1/keys" in (await client.get("/openapi.json")).json()["paths"]


async def test_every_response_has_request_id_and_overhead(client: httpx.AsyncClient) -> None:
    for path in ("/ping", "/nope", "/api/v1/auth/me"):
        response = await client.get(path)
        assert len(response.headers["x-request-id"]) >= 16
        assert float(response.headers["x-mtai-overhead-ms"]) >= 0
    echoed = await client.get("/ping", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    hostile = await client.get("/ping", headers={"X-Request-ID": "bad id\twith spaces"})
    assert hostile.headers["x-request-id"] != "bad id\twith spaces"


async def test_unknown_route_uses_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert body["request_id"] == response.headers["x-request-id"]
