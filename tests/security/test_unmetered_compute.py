"""Finding 9: embeddings, RAG search, uploads (ingestion) pass the same limits and budgets as chat.

The attacks, over HTTP: once a tenant's rpm or budget is spent, `/v1/embeddings`,
`/api/v1/rag/search` and uploads still ran (and used the embedder); a RAG chat over a tenant at
its limit retrieved (embedded the question and searched) before it was refused. The ledger kept
no record of search or ingestion embedding tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import select

from mtai.db.models import UsageEvent
from mtai.runtime import Runtime
from mtai.services.principal import operator
from tests.conftest import AdminFixture, TenantFixture, add_model, make_tenant

DOCS = "/api/v1/rag/documents"
SEARCH = "/api/v1/rag/search"
EMBED = "/v1/embeddings"
TEXT = "The keeper trims the lamp's wicks every four hours through the night."


class EmbedCalls:
    """Counts what reaches the deployment's embedder (the real one still answers)."""

    def __init__(self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[str] = []
        embedder = runtime.embedders.get(runtime.embedders.default_name)
        real = embedder.aembed

        async def counted(texts: Sequence[str]) -> npt.NDArray[np.float32]:
            self.texts += list(texts)
            return await real(texts)

        monkeypatch.setattr(embedder, "aembed", counted)


async def set_tenant_limits(
    client: httpx.AsyncClient, admin: AdminFixture, tenant: TenantFixture, **limits: Any
) -> None:
    put = await client.put(
        f"/api/v1/tenants/{tenant.id}/limits", json=limits, headers=admin.headers
    )
    assert put.status_code == 200, put.text


async def ledger_rows(runtime: Runtime, tenant: TenantFixture) -> list[UsageEvent]:
    await runtime.ledger.drain()
    async with runtime.db.platform() as session:
        result = await session.execute(select(UsageEvent).where(UsageEvent.tenant_id == tenant.id))
        return list(result.scalars())


async def wait_ready(
    client: httpx.AsyncClient, tenant: TenantFixture, document_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        body: dict[str, Any] = (
            await client.get(f"{DOCS}/{document_id}", headers=tenant.owner)
        ).json()
        if body["status"] in ("ready", "failed"):
            assert body["status"] == "ready", body
            return body
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


def embed_call(client: httpx.AsyncClient, tenant: TenantFixture, text: str = TEXT) -> Any:
    return client.post(
        EMBED, json={"model": "all-MiniLM-L6-v2", "input": text}, headers=tenant.api_key
    )


def search_call(client: httpx.AsyncClient, tenant: TenantFixture) -> Any:
    return client.post(SEARCH, json={"query": "lamp wicks"}, headers=tenant.api_key)


def upload_call(client: httpx.AsyncClient, tenant: TenantFixture, text: str = TEXT) -> Any:
    return client.post(DOCS, json={"text": text, "title": "Lamps"}, headers=tenant.api_key)


@pytest.mark.parametrize("route", ["embeddings", "search", "upload"])
async def test_rpm_is_enforced_on_embedding_compute(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    platform_admin: AdminFixture,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
) -> None:
    await set_tenant_limits(client, platform_admin, tenant_a, rpm=1)
    calls = {"embeddings": embed_call, "search": search_call, "upload": upload_call}[route]
    first = await calls(client, tenant_a)
    assert first.status_code in (200, 202), first.text
    if route == "upload":
        await wait_ready(client, tenant_a, first.json()["id"])  # its embedding is done
    spy = EmbedCalls(runtime, monkeypatch)
    second = await calls(client, tenant_a, *(["Another text."] if route != "search" else []))
    assert second.status_code == 429, second.text
    assert int(second.headers["retry-after"]) > 0
    assert spy.texts == []


@pytest.mark.parametrize("route", ["embeddings", "search", "upload"])
async def test_a_spent_budget_refuses_embedding_compute(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    platform_admin: AdminFixture,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
) -> None:
    await set_tenant_limits(client, platform_admin, tenant_a, monthly_tokens=0)
    spy = EmbedCalls(runtime, monkeypatch)
    calls = {"embeddings": embed_call, "search": search_call, "upload": upload_call}[route]
    refused = await calls(client, tenant_a)
    assert refused.status_code == 429, refused.text
    body = refused.json()
    code = body["error"]["code"] if "error" in body else body["code"]
    assert code == "budget_exceeded"
    assert spy.texts == []


async def test_embedding_tokens_count_against_the_token_budget_and_the_ledger(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    platform_admin: AdminFixture,
) -> None:
    tokens = runtime.embedders.get(runtime.embedders.default_name).count_tokens(TEXT)
    await set_tenant_limits(client, platform_admin, tenant_a, monthly_tokens=tokens * 2 + 1)
    for _ in range(2):
        answered = await embed_call(client, tenant_a)
        assert answered.status_code == 200, answered.text
        assert answered.json()["usage"]["total_tokens"] == tokens
    refused = await embed_call(client, tenant_a)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "budget_exceeded"
    rows = [r for r in await ledger_rows(runtime, tenant_a) if r.api == "embeddings"]
    assert len(rows) == 2
    assert {r.prompt_tokens for r in rows} == {tokens}


async def test_search_and_ingestion_are_recorded_with_their_embedding_tokens(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
) -> None:
    uploaded = await upload_call(client, tenant_a)
    assert uploaded.status_code == 202, uploaded.text
    ready = await wait_ready(client, tenant_a, uploaded.json()["id"])
    found = await search_call(client, tenant_a)
    assert found.status_code == 200, found.text
    for _ in range(50):
        rows = await ledger_rows(runtime, tenant_a)
        if {r.api for r in rows} >= {"rag_search", "ingestion"}:
            break
        await asyncio.sleep(0.1)
    by_api = {r.api: r for r in rows}
    assert by_api["rag_search"].prompt_tokens > 0
    assert by_api["rag_search"].api_key_id == tenant_a.key_id
    assert by_api["ingestion"].prompt_tokens == ready["token_count"] > 0
    assert by_api["ingestion"].model == "all-MiniLM-L6-v2"


async def test_embedding_cost_comes_from_the_catalog_price(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: Any,
    tenant_a: TenantFixture,
) -> None:
    """An operator prices the embedder with a catalog entry of the same name."""
    await add_model(
        runtime,
        fake_upstream,
        "openai",
        name="all-MiniLM-L6-v2",
        input_price_per_1m=Decimal(1000),
        output_price_per_1m=Decimal(0),
        enabled=False,
    )
    try:
        response = await embed_call(client, tenant_a)
        assert response.status_code == 200, response.text
        tokens = response.json()["usage"]["total_tokens"]
        rows = [r for r in await ledger_rows(runtime, tenant_a) if r.api == "embeddings"]
        assert [r.cost_usd for r in rows] == [Decimal(tokens) / 1000]
    finally:
        await runtime.catalog.delete_model(operator(), "all-MiniLM-L6-v2")


async def test_rag_chat_at_its_limit_does_not_retrieve(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    platform_admin: AdminFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uploaded = await upload_call(client, tenant_a)
    await wait_ready(client, tenant_a, uploaded.json()["id"])
    await set_tenant_limits(client, platform_admin, tenant_a, monthly_tokens=0)
    spy = EmbedCalls(runtime, monkeypatch)
    for path, body in (
        ("/api/v1/chat/", {"message": "When are the wicks trimmed?", "use_rag": True}),
        (
            "/v1/chat/completions",
            {
                "model": "extractive",
                "messages": [{"role": "user", "content": "When are the wicks trimmed?"}],
                "use_rag": True,
            },
        ),
    ):
        refused = await client.post(path, json=body, headers=tenant_a.api_key)
        assert refused.status_code == 429, refused.text
    assert spy.texts == []


async def test_rag_chat_within_limits_still_answers_with_citations(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    uploaded = await upload_call(client, tenant_a)
    await wait_ready(client, tenant_a, uploaded.json()["id"])
    answer = await client.post(
        "/api/v1/chat/",
        json={"message": "When are the wicks trimmed?", "use_rag": True, "model": "extractive"},
        headers=tenant_a.api_key,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["citations"]
    rows = await ledger_rows(runtime, tenant_a)
    assert {"native", "rag_search"} <= {r.api for r in rows}


async def test_an_api_keys_token_budget_counts_the_documents_it_uploads(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A key with its own monthly token budget uploads a document worth more than it: the
    embedding is charged to the key too, so the key's next upload is refused (it used to be
    charged to the tenant only, and the key could upload without end)."""
    tenant = await make_tenant(client, runtime)
    text = " ".join([TEXT] * 20)
    tokens = runtime.embedders.get(runtime.embedders.default_name).count_tokens(text)
    put = await client.put(
        f"/api/v1/keys/{tenant.key_id}/limits",
        json={"monthly_tokens": tokens // 2},
        headers=tenant.owner,
    )
    assert put.status_code == 200, put.text
    uploaded = await upload_call(client, tenant, text)
    assert uploaded.status_code == 202, uploaded.text
    await wait_ready(client, tenant, uploaded.json()["id"])
    again = await upload_call(client, tenant, "Another text.")
    assert again.status_code == 429, again.text
    body = again.json()
    assert (body["error"]["code"] if "error" in body else body["code"]) == "budget_exceeded"
    # The tenant's own limits are not the key's: the owner (no key budget) still uploads.
    by_owner = await client.post(
        DOCS, json={"text": "Another text.", "title": "Lamps"}, headers=tenant.owner
    )
    assert by_owner.status_code == 202, by_owner.text
