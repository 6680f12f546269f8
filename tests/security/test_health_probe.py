"""Finding 12 (/health): every unauthenticated call wrote, read and deleted an object in the
store, so anyone could turn a flood of /health calls into a flood of storage writes."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mtai.app import create_app
from mtai.config import Settings
from mtai.runtime import Runtime

INTERVAL = 3.0


async def test_a_flood_of_health_calls_writes_to_storage_once_per_interval(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings.model_copy(update={"health_cache_seconds": INTERVAL}))
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        store = runtime.store  # the app's real local object store, counted as it writes
        writes: list[str] = []
        put = store.put

        async def counting_put(key: str, data: bytes, *, content_type: str) -> None:
            writes.append(key)
            await put(key, data, content_type=content_type)

        monkeypatch.setattr(store, "put", counting_put)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://anyone") as anyone:
            flood = await asyncio.gather(*(anyone.get("/health") for _ in range(60)))
            flood += [await anyone.get("/health") for _ in range(20)]
            assert {r.status_code for r in flood} == {200}
            for response in flood:
                body = response.json()
                assert body["status"] == "healthy"
                assert body["service"] == "multitenant-ai"
                assert set(body["checks"]) == {"database", "storage", "queue"}
                assert body["checks"]["storage"] == {"status": "ok", "backend": "local"}
            assert len(writes) == 1, f"{len(writes)} storage writes for {len(flood)} calls"

            await asyncio.sleep(INTERVAL + 0.2)  # the interval is over: one new probe
            later = await asyncio.gather(*(anyone.get("/health") for _ in range(30)))
            assert {r.status_code for r in later} == {200}
            assert len(writes) == 2, writes
