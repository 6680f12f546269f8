"""How a search runs: in hybrid mode the keyword part on a second connection when one is spare
(on the same connection otherwise: the same results either way, and the spare always comes
back); knowledge bases of different embedding models searched together; the width of the HNSW
walk from the settings; the vector statement matches its HNSW index."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import numpy as np
import pytest
from alembic import command
from pydantic import SecretStr
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.exc import IntegrityError

from mtai.db.engine import Database
from mtai.db.migrate import alembic_config
from mtai.db.repositories import chunks as chunks_repo
from mtai.runtime import Runtime, open_runtime
from mtai.services.documents import Upload
from mtai.services.principal import ALL_SCOPES, Principal, Role
from mtai.services.retrieval import (
    MAX_VARIANTS,
    Retriever,
    SearchMode,
    SearchQuery,
    SpareConnections,
)
from tests.conftest import TenantFixture
from tests.integration.test_rag import GARDEN, LIGHTHOUSE, upload_text, wait_done
from tests.support.fake_upstreams import FakeUpstream
from tests.support.postgres import first_column, fresh_database


class Watched(SpareConnections):
    """Says when a search has taken the spare connection."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.taken = asyncio.Event()

    def take(self) -> bool:
        got = super().take()
        if got:
            self.taken.set()
        return got


async def test_apart_and_together_find_the_same(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    for body in (LIGHTHOUSE, GARDEN):
        created = await upload_text(client, tenant_a.owner, body)
        await wait_done(client, tenant_a.owner, created["id"])
    principal = Principal(tenant_id=tenant_a.id, role=Role.OWNER, scopes=ALL_SCOPES)
    apart = Retriever(runtime.db, runtime.embedders)
    together = Retriever(runtime.db, runtime.embedders, spare_connections=0)
    for words in ("fog horn", "compost heap microbes", "lamp light beam", "weekly"):
        query = SearchQuery(query=words, limit=5, mode=SearchMode.HYBRID)
        found = [await r.search(principal, query) for r in (apart, together)]
        assert found[0], words
        assert [(h.chunk_id, h.score, h.vector_rank, h.keyword_rank) for h in found[0]] == [
            (h.chunk_id, h.score, h.vector_rank, h.keyword_rank) for h in found[1]
        ]
    assert any(h.keyword_rank is not None and h.vector_rank is not None for h in found[0])
    assert apart.spare.in_use == 0

    # Cancelled while its keyword part is out (the client went away): the spare comes back.
    apart.spare = watched = Watched(1)
    task = asyncio.create_task(apart.search(principal, SearchQuery(query="fog signals")))
    await asyncio.wait_for(watched.taken.wait(), 30)
    assert watched.in_use == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert apart.spare.in_use == 0


async def test_knowledge_bases_of_two_models_are_searched_together(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    fake_upstream: FakeUpstream,
) -> None:
    """The query is embedded once per model: early by the default model (MiniLM), and by the
    OpenAI-compatible embedder for the knowledge base that uses it (8 dimensions, no index)."""
    local = await upload_text(client, tenant_a.owner, LIGHTHOUSE)
    await wait_done(client, tenant_a.owner, local["id"])
    # Another process of the same deployment (same secrets), with an OpenAI-compatible embedder.
    settings = runtime.settings.model_copy(
        update={
            "embedding_openai_base_url": f"{fake_upstream.base_url}/v1",
            "embedding_openai_api_key": SecretStr("sk-test"),
            "embedding_openai_model": "emb",
            "embedding_openai_dimension": fake_upstream.embedding_dim,
        }
    )
    principal = Principal(tenant_id=tenant_a.id, role=Role.OWNER, scopes=ALL_SCOPES)
    async with open_runtime(settings) as other:
        remote = await other.knowledge_bases.create(
            principal, name="Remote", description="", embedding_model="openai/emb"
        )
        upload = Upload(GARDEN.encode(), "garden.txt", "text/plain", None, "", "Remote", {})
        document = (await other.documents.upload(principal, upload)).document
        deadline = time.monotonic() + 60
        while (await other.documents.get(principal, document.id)).status != "ready":
            assert time.monotonic() < deadline, "the remote-model document was not ingested"
            await asyncio.sleep(0.1)
        fake_upstream.reset()
        hits = await other.retriever.search(
            principal, SearchQuery(query="fog horn compost", limit=10, mode=SearchMode.HYBRID)
        )
    assert {h.collection_id for h in hits} == {
        uuid.UUID(local["collection_id"]),
        remote.id,
    }
    embedded = [r.json["input"] for r in fake_upstream.requests if r.path.endswith("/embeddings")]
    assert embedded == [["fog horn compost"]]


async def test_the_graph_walk_width_is_a_setting(runtime: Runtime, database_url: str) -> None:
    async with runtime.db.unscoped() as session:
        assert (await session.execute(text("SHOW hnsw.ef_search"))).scalar_one() == "300"
    db = Database(database_url, app_role="mtai_app", pool_size=1, hnsw_ef_search=123)
    try:
        async with db.unscoped() as session:
            assert (await session.execute(text("SHOW hnsw.ef_search"))).scalar_one() == "123"
    finally:
        await db.dispose()


async def test_the_vector_statement_matches_the_hnsw_index(
    runtime: Runtime, tenant_a: TenantFixture
) -> None:
    """The statement's distance expression must be the partial index's (migration 0008), or
    PostgreSQL silently scans every chunk instead: with scans and sorts priced out, the plan
    still shows whether the index can serve it."""
    sql = chunks_repo._vector_statement(384, document_ids=False, metadata=False)
    explain = text(f"EXPLAIN {sql}").bindparams(
        bindparam("collection_ids", type_=ARRAY(UUID(as_uuid=True)))
    )
    vector = np.full(384, 1 / np.sqrt(384), dtype=np.float32)
    async with runtime.db.tenant(tenant_a.id) as session:
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        await session.execute(text("SET LOCAL enable_sort = off"))
        rows = await session.execute(
            explain,
            {
                "collection_ids": [uuid.uuid4()],
                "query_vector": chunks_repo.vector_literal(vector),
                "candidates": 50,
            },
        )
        plan = "\n".join(row[0] for row in rows)
    assert "Index Scan using rag_chunks_hnsw_384" in plan, plan


async def searched(
    client: httpx.AsyncClient, headers: dict[str, str], **fields: object
) -> list[dict[str, Any]]:
    """The results of a search for words in both LIGHTHOUSE and GARDEN, 20 at most."""
    response = await client.post(
        "/api/v1/rag/search",
        json={"query": "fog horn compost", "limit": 20, **fields},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def test_a_request_weighs_the_two_lists(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    """Weight 0 on one list leaves the other's order (the zero-weighted list only appends
    what the other lacks); bad weights are a 422 that says why."""
    for body in (LIGHTHOUSE, GARDEN):
        created = await upload_text(client, tenant_a.owner, body)
        await wait_done(client, tenant_a.owner, created["id"])

    async def search(**fields: object) -> list[dict[str, Any]]:
        return await searched(client, tenant_a.owner, **fields)

    for mode, weights in (
        ("vector", {"vector": 1, "keyword": 0}),
        ("keyword", {"vector": 0, "keyword": 2}),
    ):
        alone = [h["chunk_id"] for h in await search(mode=mode)]
        weighed = [h["chunk_id"] for h in await search(weights=weights)]
        assert alone, mode
        assert weighed[: len(alone)] == alone, mode
    for bad in (
        {"weights": {"vector": -1, "keyword": 1}},
        {"weights": {"vector": 0, "keyword": 0}},
        {"weights": {"vector": 1}},
        {"weights": {"vector": 1, "keyword": 1, "k": 60}},
        {"weights": {"vector": 1e9, "keyword": 1}},
        {"weights": {"vector": 1, "keyword": 1}, "mode": "vector"},
    ):
        response = await client.post(
            "/api/v1/rag/search", json={"query": "fog", **bad}, headers=tenant_a.owner
        )
        assert response.status_code == 422, (bad, response.text)
    nan = await client.post(
        "/api/v1/rag/search",
        content=b'{"query": "fog", "weights": {"vector": NaN, "keyword": 1}}',
        headers={**tenant_a.owner, "content-type": "application/json"},
    )
    assert nan.status_code == 422, nan.text


async def test_a_knowledge_base_keeps_weights_of_its_own(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    collections = "/api/v1/rag/collections"
    leaning = await client.post(
        collections,
        json={"name": "Leaning", "weights": {"vector": 1, "keyword": 0}},
        headers=tenant_a.owner,
    )
    assert leaning.status_code == 201, leaning.text
    assert leaning.json()["weights"] == {"vector": 1.0, "keyword": 0.0}
    plain = await client.post(collections, json={"name": "Plain"}, headers=tenant_a.owner)
    assert plain.json()["weights"] is None
    kb, other = leaning.json()["id"], plain.json()["id"]
    for body, collection in ((LIGHTHOUSE, "Leaning"), (GARDEN, "Leaning"), (LIGHTHOUSE, "Plain")):
        created = await upload_text(client, tenant_a.owner, body, collection=collection)
        await wait_done(client, tenant_a.owner, created["id"])

    async def search(**fields: object) -> list[str]:
        return [h["chunk_id"] for h in await searched(client, tenant_a.owner, **fields)]

    alone = await search(mode="vector", collection_ids=[kb])
    assert alone
    assert (await search(collection_ids=[kb]))[: len(alone)] == alone  # the base's weights
    by_keyword = await search(mode="keyword", collection_ids=[kb])
    overridden = await search(collection_ids=[kb], weights={"vector": 0, "keyword": 1})
    assert overridden[: len(by_keyword)] == by_keyword  # a request's weights win
    # Two bases weighing differently, searched together: each is searched its own way.
    both = await search()
    assert set(both) >= set(await search(collection_ids=[other]))

    changed = await client.patch(
        f"{collections}/{kb}", json={"weights": {"vector": 3, "keyword": 2}}, headers=tenant_a.owner
    )
    assert changed.json()["weights"] == {"vector": 3.0, "keyword": 2.0}
    renamed = await client.patch(
        f"{collections}/{kb}", json={"name": "Kept"}, headers=tenant_a.owner
    )
    assert renamed.json()["weights"] == {"vector": 3.0, "keyword": 2.0}  # absent: unchanged
    reset = await client.patch(
        f"{collections}/{kb}", json={"weights": None}, headers=tenant_a.owner
    )
    assert reset.json()["weights"] is None
    for bad in (
        {"vector": 0, "keyword": 0},
        {"vector": -0.5, "keyword": 1},
        {"vector": 101, "keyword": 1},
        {"vector": 1},
        "heavy",
    ):
        refused = await client.patch(
            f"{collections}/{kb}", json={"weights": bad}, headers=tenant_a.owner
        )
        assert refused.status_code == 422, (bad, refused.text)
    audit = await client.get(
        "/api/v1/admin/audit", params={"action": "collection.update"}, headers=tenant_a.owner
    )
    changes = audit.json()["items"]
    assert any(e["details"].get("weights") == "vector 3, keyword 2" for e in changes), changes

    # The database holds the same rule should anything write past the API.
    async with runtime.db.tenant(tenant_a.id) as session:
        with pytest.raises(IntegrityError):
            await session.execute(
                text(
                    "UPDATE rag_collections SET vector_weight = 0, keyword_weight = 0 "
                    "WHERE id = :id"
                ),
                {"id": uuid.UUID(kb)},
            )


async def _weight_columns(url: str) -> list[object]:
    return await first_column(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = "
        "'rag_collections' AND column_name LIKE '%_weight' ORDER BY column_name",
    )


async def test_migration_0014_upgrades_downgrades_and_upgrades_again(pg_admin_url: str) -> None:
    with fresh_database(pg_admin_url) as url:
        config = alembic_config(url, "mtai_app")
        await asyncio.to_thread(command.upgrade, config, "0014")
        assert await _weight_columns(url) == ["keyword_weight", "vector_weight"]
        await asyncio.to_thread(command.downgrade, config, "0013")
        assert await _weight_columns(url) == []
        await asyncio.to_thread(command.upgrade, config, "0014")
        assert await _weight_columns(url) == ["keyword_weight", "vector_weight"]


async def test_explain_shows_each_list_and_the_fusion(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    for body in (LIGHTHOUSE, GARDEN):
        created = await upload_text(client, tenant_a.owner, body)
        await wait_done(client, tenant_a.owner, created["id"])

    async def search(**fields: object) -> list[dict[str, Any]]:
        return await searched(client, tenant_a.owner, **fields)

    assert all(h["explain"] is None for h in await search())  # only when asked
    vector = {h["chunk_id"]: h for h in await search(mode="vector")}
    keyword = {h["chunk_id"]: h for h in await search(mode="keyword")}
    explained = await search(explain=True, weights={"vector": 2, "keyword": 1})
    assert any(h["explain"]["vector"] and h["explain"]["keyword"] for h in explained)
    for hit in explained:
        why = hit["explain"]
        assert why["fused_score"] == hit["score"]
        assert why["fusion"] == {"method": "convex", "vector": 2.0, "keyword": 1.0}
        if why["vector"] is not None:
            assert why["vector"]["rank"] == hit["vector_rank"]
            assert why["vector"]["score"] == vector[hit["chunk_id"]]["score"]
        if why["keyword"] is not None:
            assert why["keyword"]["rank"] == hit["keyword_rank"]
            assert why["keyword"]["score"] == keyword[hit["chunk_id"]]["score"]
    alone = await search(mode="keyword", explain=True)
    assert alone
    assert all(h["explain"]["fusion"] is None and h["explain"]["vector"] is None for h in alone)


async def test_knowledge_bases_cannot_multiply_a_searchs_queries(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    """Each distinct weighting is a search of its own; a tenant giving each of its knowledge
    bases other weights must not turn one search into hundreds of queries."""
    ids = []
    for n in range(MAX_VARIANTS + 1):
        created = await client.post(
            "/api/v1/rag/collections",
            json={"name": f"kb-{n}", "weights": {"vector": 1, "keyword": n + 1}},
            headers=tenant_a.owner,
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    refused = await client.post("/api/v1/rag/search", json={"query": "fog"}, headers=tenant_a.owner)
    assert refused.status_code == 422, refused.text
    assert "at most 4" in refused.json()["detail"]
    assert "collection_ids" in refused.json()["detail"]
    for fields in (
        {"collection_ids": ids[:MAX_VARIANTS]},
        {"weights": {"vector": 1, "keyword": 1}},  # one weighting for all of them
        {"mode": "vector"},
    ):
        fine = await client.post(
            "/api/v1/rag/search", json={"query": "fog", **fields}, headers=tenant_a.owner
        )
        assert fine.status_code == 200, (fields, fine.text)
