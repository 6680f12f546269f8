"""Reranking: the Cohere-compatible /v1/rerank (and /v2/rerank for Cohere's own SDK), metered
like embeddings; knowledge bases that turn reranking on, in search and explain; the Bedrock
reranker; and what happens without a reranker or when it fails. The fake upstream speaks
Cohere's and Bedrock Agent Runtime's rerank wire formats."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import cohere
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from mtai.app import create_app
from mtai.config import RerankProvider
from mtai.providers.rerank.base import RerankError
from mtai.providers.rerank.bedrock import BedrockReranker
from mtai.runtime import Runtime
from tests.conftest import TenantFixture
from tests.integration.test_embedders import aws_credentials  # noqa: F401 (a fixture)
from tests.integration.test_rag import COLLECTIONS, SEARCH, upload_text, wait_done
from tests.support.fake_upstreams import Behaviour, FakeUpstream, rerank_score

MODEL = "rerank-fake"
NAME = f"cohere/{MODEL}"
UPSTREAM_KEY = "sk-rerank-upstream-secret"
DOCUMENTS = [
    "Compost needs air and water.",
    "The lighthouse lamp burned all night above the harbour.",
    "A lighthouse keeper trimmed the lamp wick.",
    "Tea is served at four.",
]
QUERY = "who trimmed the lighthouse lamp"


@dataclass
class Deployment:
    client: httpx.AsyncClient
    runtime: Runtime


@pytest.fixture(scope="module")
async def reranking(runtime: Runtime, fake_upstream: FakeUpstream) -> AsyncIterator[Deployment]:
    """Another process of the same deployment (same database and secrets), with a reranker."""
    settings = runtime.settings.model_copy(
        update={
            "rerank_provider": RerankProvider.COHERE,
            "rerank_base_url": f"{fake_upstream.base_url}/v1",
            "rerank_api_key": SecretStr(UPSTREAM_KEY),
            "rerank_model": MODEL,
            "rerank_candidates": 5,
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Deployment(client, app.state.runtime)


@pytest.fixture
def upstream(fake_upstream: FakeUpstream) -> FakeUpstream:
    fake_upstream.reset()
    return fake_upstream


def expected_order(query: str, documents: list[str]) -> list[int]:
    scores = [rerank_score(query, d) for d in documents]
    return sorted(range(len(documents)), key=lambda i: (-scores[i], i))


async def ledger(deployment: Deployment, tenant: TenantFixture, api: str) -> list[Any]:
    await deployment.runtime.ledger.drain()
    async with deployment.runtime.db.tenant(tenant.id) as session:
        rows = await session.execute(
            text(
                "SELECT model, provider, prompt_tokens, status, error_code, request_id "
                "FROM usage_events WHERE api = :api ORDER BY created_at"
            ),
            {"api": api},
        )
        return list(rows)


async def test_the_cohere_sdk_reranks_through_mtai(
    reranking: Deployment, upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    co = cohere.AsyncClientV2(
        api_key=tenant_a.key, base_url="http://test", httpx_client=reranking.client
    )
    response = await co.rerank(model=NAME, query=QUERY, documents=DOCUMENTS, top_n=2)
    assert [r.index for r in response.results] == expected_order(QUERY, DOCUMENTS)[:2]
    assert response.results[0].relevance_score == rerank_score(QUERY, DOCUMENTS[2])
    # The upstream got the operator's key and the model's own name, never the tenant's key.
    sent = [r for r in upstream.requests if r.protocol == "cohere"]
    assert len(sent) == 1
    assert sent[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent[0].json["model"] == MODEL
    assert tenant_a.key not in str(sent[0].headers)
    rows = await ledger(reranking, tenant_a, "rerank")
    assert len(rows) == 1
    assert (rows[0].model, rows[0].provider, rows[0].status) == (NAME, "cohere", "ok")
    assert rows[0].prompt_tokens > 0


async def test_v1_rerank_in_cohere_shape_and_its_refusals(
    reranking: Deployment, upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    client, headers = reranking.client, tenant_a.api_key
    body: dict[str, Any] = {
        "model": NAME,
        "query": QUERY,
        "documents": [{"text": d} for d in DOCUMENTS],
        "return_documents": True,
    }
    answer = await client.post("/v1/rerank", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["index"] for r in results] == expected_order(QUERY, DOCUMENTS)
    assert [r["document"]["text"] for r in results] == [DOCUMENTS[r["index"]] for r in results]
    assert answer.json()["meta"]["tokens"]["input_tokens"] > 0

    # Invalid requests are 400s on /v1, as OpenAI-style SDKs expect.
    refusals = [
        ({**body, "rank_fields": ["text"]}, 400),  # honoured by Cohere, so not dropped
        ({**body, "model": "cohere/other"}, 404),
        ({**body, "documents": []}, 400),
        ({**body, "documents": ["x"] * 1001}, 400),
        ({**body, "documents": ["fine", "   "]}, 400),
        ({**body, "documents": ["x" * 20_001]}, 400),
        ({**body, "query": "   "}, 400),
        ({**body, "top_n": 0}, 400),
    ]
    for wrong, status in refusals:
        refused = await client.post("/v1/rerank", json=wrong, headers=headers)
        assert refused.status_code == status, (wrong.keys(), refused.text)
        assert "error" in refused.json()
    assert (await client.post("/v1/rerank", json=body)).status_code == 401
    assert len([r for r in upstream.requests if r.protocol == "cohere"]) == 1


async def test_a_failing_reranker_is_a_clear_502_without_its_key(
    reranking: Deployment, upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    upstream.script(MODEL, *(Behaviour("500") for _ in range(3)))
    body = {"model": NAME, "query": QUERY, "documents": DOCUMENTS}
    failed = await reranking.client.post("/v1/rerank", json=body, headers=tenant_a.api_key)
    assert failed.status_code == 502, failed.text
    message = failed.json()["error"]["message"]
    assert "Reranking with cohere/rerank-fake" in message
    assert "after 3 attempts" in message
    assert UPSTREAM_KEY not in failed.text
    upstream.script(MODEL, Behaviour("malformed"))
    malformed = await reranking.client.post("/v1/rerank", json=body, headers=tenant_a.api_key)
    assert malformed.status_code == 502, malformed.text
    statuses = [r.status for r in await ledger(reranking, tenant_a, "rerank")]
    assert statuses == ["error", "error"]


async def _reranked_base(deployment: Deployment, tenant: TenantFixture, rerank: bool) -> str:
    client = deployment.client
    name = f"kb-{uuid.uuid4().hex[:6]}"
    made = await client.post(
        COLLECTIONS, json={"name": name, "rerank": rerank}, headers=tenant.owner
    )
    assert made.status_code == 201, made.text
    assert made.json()["rerank"] is rerank
    for document in DOCUMENTS:
        created = await upload_text(client, tenant.owner, document, collection=name)
        await wait_done(client, tenant.owner, created["id"])
    return str(made.json()["id"])


async def test_a_knowledge_base_that_reranks_orders_search_by_the_reranker(
    reranking: Deployment, upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    client = reranking.client
    kb = await _reranked_base(reranking, tenant_a, rerank=True)
    upstream.reset()
    body = {"query": QUERY, "limit": 3, "collection_ids": [kb], "explain": True}
    found = await client.post(SEARCH, json=body, headers=tenant_a.owner)
    assert found.status_code == 200, found.text
    hits = found.json()["results"]
    texts = [h["text"] for h in hits]
    # The reranker read every fused passage (4, under MTAI_RERANK_CANDIDATES = 5), each with
    # its title before its text, and its order is the search's.
    sent = [r for r in upstream.requests if r.protocol == "cohere"]
    assert len(sent) == 1
    assert sent[0].json["query"] == QUERY
    read = sent[0].json["documents"]
    assert len(read) == 4
    best = [read[i] for i in expected_order(QUERY, read)[:3]]
    assert [passage.endswith(t) for passage, t in zip(best, texts, strict=True)] == [True] * 3
    for hit in hits:
        assert hit["score"] == hit["explain"]["rerank_score"]
        assert hit["explain"]["fused_score"] is not None
    rows = await ledger(reranking, tenant_a, "rag_rerank")
    assert len(rows) == 1
    assert rows[0].status == "ok"

    # "rerank": false in the request wins over the knowledge base; explain says unreranked.
    plain = await client.post(SEARCH, json={**body, "rerank": False}, headers=tenant_a.owner)
    assert all(h["explain"]["rerank_score"] is None for h in plain.json()["results"])
    # Turned off on the knowledge base (audited), searches are not reranked unless asked.
    changed = await client.patch(
        f"{COLLECTIONS}/{kb}", json={"rerank": False}, headers=tenant_a.owner
    )
    assert changed.status_code == 200
    assert changed.json()["rerank"] is False
    upstream.reset()
    await client.post(SEARCH, json=body, headers=tenant_a.owner)
    assert not [r for r in upstream.requests if r.protocol == "cohere"]
    asked = await client.post(SEARCH, json={**body, "rerank": True}, headers=tenant_a.owner)
    assert [h["text"] for h in asked.json()["results"]] == texts
    audit = await client.get(
        "/api/v1/admin/audit", params={"action": "collection.update"}, headers=tenant_a.owner
    )
    assert any(e["details"].get("rerank") == "false" for e in audit.json()["items"])


async def test_without_a_reranker_reranking_is_refused_clearly(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    made = await client.post(
        COLLECTIONS, json={"name": "R", "rerank": True}, headers=tenant_a.owner
    )
    assert made.status_code == 422, made.text
    assert made.json()["code"] == "reranker_unavailable"
    searched = await client.post(
        SEARCH, json={"query": "lamp", "rerank": True}, headers=tenant_a.owner
    )
    assert searched.status_code == 503, searched.text
    assert "MTAI_RERANK_PROVIDER" in searched.json()["detail"]
    unknown = await client.post(
        "/v1/rerank",
        json={"model": NAME, "query": "q", "documents": ["d"]},
        headers=tenant_a.api_key,
    )
    assert unknown.status_code == 404, unknown.text


@pytest.mark.usefixtures("aws_credentials")
async def test_the_bedrock_reranker_speaks_the_agent_runtime_rerank_api(
    upstream: FakeUpstream,
) -> None:
    reranker = BedrockReranker(
        "cohere.rerank-v3-5:0", region="us-west-2", endpoint_url=upstream.base_url
    )
    try:
        order = await reranker.arerank(QUERY, DOCUMENTS)
        assert [r.index for r in order] == expected_order(QUERY, DOCUMENTS)
        sent = [r for r in upstream.requests if r.path == "/rerank"]
        assert sent[0].headers["authorization"].startswith("AWS4-HMAC-SHA256")
        model = sent[0].json["rerankingConfiguration"]["bedrockRerankingConfiguration"]
        assert model["modelConfiguration"]["modelArn"] == (
            "arn:aws:bedrock:us-west-2::foundation-model/cohere.rerank-v3-5:0"
        )
        upstream.script("cohere.rerank-v3-5:0", *(Behaviour("429") for _ in range(3)))
        with pytest.raises(RerankError, match="Bedrock is throttling"):
            await reranker.arerank(QUERY, DOCUMENTS)
    finally:
        await reranker.aclose()
