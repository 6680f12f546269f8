"""A streamed chat whose client is gone before the first byte of the answer is sent.

The attack: send a streaming chat and hang up at once. The gateway opens the upstream call
before answering, so the upstream has started generating; but if the disconnect lands before
the response body's generator first runs (any ASGI server whose `send` yields: write
back-pressure, HTTP/2, another server than uvicorn), nothing settled the admission. The key's
concurrency slot stayed held for the whole lease (15 minutes by default), the budget
reservation expired without being charged, and the ledger got no row (no usage, no
mandatory prompt log).

Driven at the ASGI level so the moment of the disconnect is exact, with the app the `client`
fixture serves.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mtai.db.models import UsageEvent
from mtai.runtime import Runtime
from tests.conftest import add_model, make_tenant
from tests.support.fake_upstreams import Behaviour, FakeUpstream


async def _send_and_hang_up(app: FastAPI, path: str, key: str, body: dict[str, Any]) -> int:
    """The whole request, then `http.disconnect`; the server's send yields once per message
    (as a real server's does when its socket buffer is full). Returns the status sent."""
    payload = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    messages = [{"type": "http.request", "body": payload, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await asyncio.sleep(0.01)

    await app(scope, receive, send)
    return status


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "talk"}]}),
        ("/api/v1/chat/", {"message": "talk"}),
    ],
)
async def test_hanging_up_before_the_stream_starts_releases_the_slot_and_is_recorded(
    app: FastAPI,
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    path: str,
    body: dict[str, Any],
) -> None:
    tenant = await make_tenant(client, runtime)
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(kind="slow", text="word " * 20, delay=0.3, completion_tokens=200),
    )
    put = await client.put(
        f"/api/v1/keys/{tenant.key_id}/limits", json={"concurrency": 1}, headers=tenant.owner
    )
    assert put.status_code == 200, put.text
    status = await _send_and_hang_up(
        app, path, tenant.key, {**body, "model": spec.name, "stream": True}
    )
    assert status == 200
    deadline = time.monotonic() + 10
    while spec.upstream_model not in fake_upstream.cancelled:
        assert time.monotonic() < deadline, "the upstream stream was not stopped"
        await asyncio.sleep(0.05)
    # The gone client's slot is back: the key's next request is admitted.
    response = await client.post(path, json={**body, "model": "extractive"}, headers=tenant.api_key)
    assert response.status_code == 200, response.text
    # And the abandoned call is in the ledger, as cancelled.
    await runtime.ledger.drain()
    async with runtime.db.platform() as session:
        rows = list(
            (
                await session.execute(
                    select(UsageEvent).where(
                        UsageEvent.tenant_id == tenant.id, UsageEvent.model == spec.name
                    )
                )
            ).scalars()
        )
    assert [row.status for row in rows] == ["cancelled"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "talk"}]}),
        ("/api/v1/chat/", {"message": "talk"}),
    ],
)
async def test_a_request_cancelled_while_the_upstream_answers_releases_the_slot(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    path: str,
    body: dict[str, Any],
) -> None:
    """A non-streamed chat cancelled during the upstream call (a shutdown's deadline, a server
    that cancels on disconnect) hands its admission back and leaves a ledger row."""
    tenant = await make_tenant(client, runtime)
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    fake_upstream.script(spec.upstream_model, Behaviour(kind="slow", delay=5))
    put = await client.put(
        f"/api/v1/keys/{tenant.key_id}/limits", json={"concurrency": 1}, headers=tenant.owner
    )
    assert put.status_code == 200, put.text
    before = len(fake_upstream.requests)
    call = asyncio.create_task(
        client.post(path, json={**body, "model": spec.name}, headers=tenant.api_key)
    )
    deadline = time.monotonic() + 10
    while len(fake_upstream.requests) == before:
        assert time.monotonic() < deadline, "the upstream was never called"
        await asyncio.sleep(0.02)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    response = await client.post(path, json={**body, "model": "extractive"}, headers=tenant.api_key)
    assert response.status_code == 200, response.text
    await runtime.ledger.drain()
    async with runtime.db.platform() as session:
        rows = list(
            (
                await session.execute(
                    select(UsageEvent).where(
                        UsageEvent.tenant_id == tenant.id, UsageEvent.model == spec.name
                    )
                )
            ).scalars()
        )
    assert [row.status for row in rows] == ["cancelled"]
    assert rows[0].prompt_tokens > 0
