"""The Responses API's limits: a text input is bounded in characters (not in list items), a
stored conversation past max_conversation_bytes is refused before it is loaded, and stored
responses are purged after responses_retention_days by the usage drain."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from mtai.api.openai_responses import MAX_ITEMS
from mtai.config import Settings
from mtai.db.models import StoredResponse
from mtai.providers.llm.conversation import Message
from mtai.runtime import Runtime
from mtai.services.responses import message_json, public_id
from tests.conftest import TenantFixture, add_model
from tests.integration.test_catalog_ledger_parity import record
from tests.support.fake_upstreams import FakeUpstream


async def test_a_text_input_is_bounded_in_characters_and_an_item_list_in_items(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    async def create(value: object) -> httpx.Response:
        body = {"model": "extractive", "input": value, "store": False}
        return await client.post("/v1/responses", json=body, headers=tenant_a.api_key)

    long_text = await create("Where is the archive kept? " * 200)
    assert long_text.status_code == 200, long_text.text
    many = await create([{"role": "user", "content": "hi"}] * (MAX_ITEMS + 1))
    assert many.status_code == 400, many.text
    assert f"at most {MAX_ITEMS} items" in many.json()["error"]["message"]


async def test_a_conversation_past_the_byte_limit_is_refused_before_it_is_loaded(
    client: httpx.AsyncClient,
    runtime: Runtime,
    settings: Settings,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")

    async def create(text: str, previous: str | None = None) -> httpx.Response:
        body = {"model": spec.name, "input": text, "previous_response_id": previous}
        return await client.post("/v1/responses", json=body, headers=tenant_a.api_key)

    first = await create("a" * 3000)
    assert first.status_code == 200, first.text
    second = await create("b" * 3000, first.json()["id"])
    assert second.status_code == 200, second.text
    # Each stored turn holds a little over 3000 bytes: one fits, the two together do not.
    monkeypatch.setattr(settings, "max_conversation_bytes", 5000)
    calls = len(fake_upstream.requests)

    refused = await create("and then?", second.json()["id"])
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "conversation_too_large"
    assert "too large to continue" in error["message"]
    assert "without previous_response_id" in error["message"]
    assert len(fake_upstream.requests) == calls  # refused before any upstream call

    shorter = await create("and then?", first.json()["id"])
    assert shorter.status_code == 200, shorter.text


async def test_stored_responses_past_their_retention_are_purged_by_the_drain(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    now = datetime.now(UTC)
    owner = f"api_key:{tenant_a.key_id}"
    turn = [message_json(Message("user", "remember 7741"))]

    def stored(age_days: int) -> StoredResponse:
        return StoredResponse(
            id=uuid.uuid4(),
            tenant_id=tenant_a.id,
            owner=owner,
            previous_id=None,
            model="m",
            input=turn,
            output=[],
            body={"object": "response"},
            created_at=now - timedelta(days=age_days),
        )

    old, fresh = stored(31), stored(29)
    old_id, fresh_id = old.id, fresh.id
    async with runtime.db.tenant(tenant_a.id) as session:
        session.add_all([old, fresh])
    runtime.ledger.record(record(tenant_a, "m"))  # a drain runs only with usage to move
    await runtime.ledger.drain()

    async with runtime.db.platform() as session:
        found = await session.execute(
            select(StoredResponse.id).where(StoredResponse.id.in_([old_id, fresh_id]))
        )
        assert set(found.scalars()) == {fresh_id}
    gone = await client.get(f"/v1/responses/{public_id(old_id)}", headers=tenant_a.api_key)
    assert gone.status_code == 404, gone.text
    continued = await client.post(
        "/v1/responses",
        json={
            "model": "extractive",
            "input": "what was it?",
            "previous_response_id": public_id(old_id),
        },
        headers=tenant_a.api_key,
    )
    assert continued.status_code == 404, continued.text
    assert continued.json()["error"]["code"] == "previous_response_not_found"
    kept = await client.get(f"/v1/responses/{public_id(fresh_id)}", headers=tenant_a.api_key)
    assert kept.status_code == 200, kept.text
