from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from mtai.app import create_app
from mtai.config import Settings
from mtai.db.migrate import upgrade
from tests.conftest import TenantFixture, make_settings
from tests.support.postgres import _psql, fresh_database


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
    assert set(root) == {"message", "version", "docs", "ui"}
    assert (await client.get("/docs")).status_code == 200
    assert "/api/v1/keys" in (await client.get("/openapi.json")).json()["paths"]


async def test_every_response_has_request_id_and_overhead(client: httpx.AsyncClient) -> None:
    for path in ("/ping", "/nope", "/api/v1/auth/me"):
        response = await client.get(path)
        assert len(response.headers["x-request-id"]) >= 16
        assert float(response.headers["x-mtai-overhead-ms"]) >= 0
    # The server makes the request id; the client's own is echoed apart, for correlation.
    echoed = await client.get("/ping", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] != "trace-123"
    assert echoed.headers["x-client-request-id"] == "trace-123"
    hostile = await client.get("/ping", headers={"X-Request-ID": "bad id\twith spaces"})
    assert hostile.headers["x-request-id"] != "bad id\twith spaces"
    assert "x-client-request-id" not in hostile.headers


async def test_an_unhandled_error_is_a_500_naming_its_request_id(settings: Settings) -> None:
    """Starlette answers unhandled errors outside every middleware; the id must still be there."""
    application = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("a bug")

    application.add_api_route("/boom", boom)
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        response = await c.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert body["request_id"] is not None
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["request_id"] in body["detail"]
    assert "a bug" not in response.text


async def test_unknown_route_uses_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert body["request_id"] == response.headers["x-request-id"]


async def test_health_is_503_naming_the_database_when_it_goes_away(pg_admin_url: str) -> None:
    """A real outage: the app's database is dropped under it; /health sees it within its
    probe interval (it reuses a probe's result that long)."""
    with fresh_database(pg_admin_url) as url:
        await upgrade(url, "mtai_app")
        app = create_app(make_settings(url, health_cache_seconds=0.5))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get("/health")).status_code == 200
                name = url.rsplit("/", 1)[1]
                _psql(pg_admin_url, f"DROP DATABASE {name} WITH (FORCE)")
                await asyncio.sleep(0.6)
                response = await client.get("/health")
                assert response.status_code == 503
                body = response.json()
                assert body["status"] == "unhealthy"
                assert body["checks"]["database"]["status"] == "failed"
                assert "database" in body["detail"]
                assert (await client.get("/healthz")).status_code == 200  # liveness has no I/O


async def test_logs_are_json_with_request_and_tenant_id(
    client: httpx.AsyncClient, tenant_a: TenantFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mtai.access")
    response = await client.get("/api/v1/auth/me", headers=tenant_a.api_key)
    request_id = response.headers["x-request-id"]
    events = [
        r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "request"
    ]
    mine = [e for e in events if e.get("request_id") == request_id]
    assert len(mine) == 1
    assert mine[0]["tenant_id"] == str(tenant_a.id)
    assert mine[0]["status"] == 200
    assert tenant_a.key not in caplog.text
