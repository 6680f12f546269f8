"""Per-knowledge-base term and chunk counts (rag_terms, rag_collection_sizes; migration 0007):
kept exact by the chunk triggers through every write, invisible to the app role; what keyword
search picks its words by, and what decides whether vector search walks the HNSW graph."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from mtai.db.repositories import chunks as chunks_repo
from mtai.db.repositories import documents as documents_repo
from mtai.runtime import Runtime
from mtai.services.principal import ALL_SCOPES, Principal, Role
from mtai.services.retrieval import SearchMode, SearchQuery
from tests.conftest import TenantFixture
from tests.integration.test_rag import COLLECTIONS, DOCS, GARDEN, LIGHTHOUSE, upload_text, wait_done

Counts = dict[tuple[uuid.UUID, str], int]
Sizes = dict[uuid.UUID, tuple[int, int]]  # chunks, summed lengths


@pytest.fixture
async def owner(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The database owner, whom rag_terms' RLS does not bind: to read the counts as stored (a
    member of the platform role, it sees every tenant's knowledge bases)."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def stored(owner: asyncpg.Connection, tenant_id: uuid.UUID) -> Counts:
    rows = await owner.fetch(
        "SELECT t.collection_id, t.lexeme, t.chunks FROM rag_terms t "
        "JOIN rag_collections k ON k.id = t.collection_id "
        "WHERE k.tenant_id = $1 AND t.chunks <> 0",
        tenant_id,
    )
    return {(r[0], r[1]): r[2] for r in rows}


async def recounted(owner: asyncpg.Connection, tenant_id: uuid.UUID) -> Counts:
    rows = await owner.fetch(
        "SELECT c.collection_id, l.lexeme, count(*) FROM rag_chunks c, "
        "unnest(tsvector_to_array(c.tsv)) l(lexeme) WHERE c.tenant_id = $1 GROUP BY 1, 2",
        tenant_id,
    )
    return {(r[0], r[1]): r[2] for r in rows}


async def sizes(owner: asyncpg.Connection, tenant_id: uuid.UUID) -> tuple[Sizes, Sizes]:
    """(stored, recounted) chunks and their summed lengths per knowledge base."""
    kept = await owner.fetch(
        "SELECT s.collection_id, s.chunks, s.lexemes FROM rag_collection_sizes s "
        "JOIN rag_collections k ON k.id = s.collection_id WHERE k.tenant_id = $1 AND s.chunks <> 0",
        tenant_id,
    )
    counted = await owner.fetch(
        "SELECT collection_id, count(*), sum(length(tsv)) FROM rag_chunks WHERE tenant_id = $1 "
        "GROUP BY 1",
        tenant_id,
    )
    return {r[0]: (r[1], r[2]) for r in kept}, {r[0]: (r[1], r[2]) for r in counted}


async def assert_exact(owner: asyncpg.Connection, tenant_id: uuid.UUID) -> Counts:
    counts = await recounted(owner, tenant_id)
    assert counts, "no chunks to count"
    assert await stored(owner, tenant_id) == counts
    kept, counted = await sizes(owner, tenant_id)
    assert kept == counted
    return counts


async def test_counts_stay_exact_through_ingest_reprocess_and_deletes(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture, owner: asyncpg.Connection
) -> None:
    made = await client.post(COLLECTIONS, json={"name": "Terms"}, headers=tenant_a.owner)
    assert made.status_code == 201, made.text
    collection_id = uuid.UUID(made.json()["id"])
    lighthouse = await upload_text(client, tenant_a.owner, LIGHTHOUSE, collection="Terms")
    garden = await upload_text(client, tenant_a.owner, GARDEN, collection="Terms")
    elsewhere = await upload_text(client, tenant_a.owner, LIGHTHOUSE + "\nA second copy.")
    for created in (lighthouse, garden, elsewhere):
        await wait_done(client, tenant_a.owner, created["id"])
    counts = await assert_exact(owner, tenant_a.id)
    assert counts[(collection_id, "diaphon")] == 1
    assert counts[(uuid.UUID(elsewhere["collection_id"]), "diaphon")] == 1

    # Three workers re-processing the same two documents at once: no deadlock, same counts.
    async with runtime.db.tenant(tenant_a.id) as session:
        await documents_repo.requeue_collection(session, collection_id)
    ids = [uuid.UUID(lighthouse["id"]), uuid.UUID(garden["id"])]
    await asyncio.gather(*(runtime.ingestor.process(tenant_a.id, d) for d in ids * 3))
    for document_id in ids:
        await wait_done(client, tenant_a.owner, str(document_id))
    assert await assert_exact(owner, tenant_a.id) == counts

    deleted = await client.delete(f"{DOCS}/{lighthouse['id']}", headers=tenant_a.owner)
    assert deleted.status_code == 204, deleted.text
    after = await assert_exact(owner, tenant_a.id)
    assert (collection_id, "diaphon") not in after
    assert after[(collection_id, "compost")] == 1

    gone = await client.delete(f"{COLLECTIONS}/{collection_id}", headers=tenant_a.owner)
    assert gone.status_code == 204, gone.text
    for table in ("rag_terms", "rag_collection_sizes"):
        left = await owner.fetchval(
            f"SELECT count(*) FROM {table} WHERE collection_id = $1",
            collection_id,
        )
        assert left == 0, table
    await assert_exact(owner, tenant_a.id)


@pytest.mark.parametrize("table", ["rag_terms", "rag_collection_sizes"])
async def test_the_app_role_cannot_read_the_counts(
    runtime: Runtime, tenant_a: TenantFixture, table: str
) -> None:
    with pytest.raises(ProgrammingError, match="permission denied"):
        async with runtime.db.tenant(tenant_a.id) as session:
            await session.execute(text(f"SELECT count(*) FROM {table}"))


async def test_vector_search_walks_the_graph_only_for_big_knowledge_bases(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    owner: asyncpg.Connection,
) -> None:
    created = await upload_text(client, tenant_a.owner, GARDEN)
    await wait_done(client, tenant_a.owner, created["id"])
    collection_id = uuid.UUID(created["collection_id"])
    vector = np.random.default_rng(7).standard_normal(384).astype(np.float32)

    async def sort_allowed(
        tenant_id: uuid.UUID,
        document_ids: list[uuid.UUID] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        async with runtime.db.tenant(tenant_id) as session:
            await chunks_repo.vector_candidates(
                session,
                dim=384,
                query_vector=vector,
                collection_ids=[collection_id],
                document_ids=document_ids,
                metadata=metadata,
                candidates=5,
            )
            return str((await session.execute(text("SHOW enable_sort"))).scalar_one())

    # One chunk: the planner's choice stands (it scans and sorts the few rows exactly).
    assert await sort_allowed(tenant_a.id) == "on"
    # As big as the walk needs; set by hand, as embedding 2,000 chunks would take minutes.
    grow = "UPDATE rag_collection_sizes SET chunks = chunks + $2 WHERE collection_id = $1"
    await owner.execute(grow, collection_id, 1_000_000)
    try:
        assert await sort_allowed(tenant_a.id) == "off"
        # A document or metadata filter: the planner's choice again (an index on the filter).
        assert await sort_allowed(tenant_a.id, document_ids=[uuid.UUID(created["id"])]) == "on"
        assert await sort_allowed(tenant_a.id, metadata={"lang": "en"}) == "on"
        # Another tenant naming this knowledge base learns nothing from its size.
        assert await sort_allowed(tenant_b.id) == "on"
        principal = Principal(tenant_id=tenant_a.id, role=Role.OWNER, scopes=ALL_SCOPES)
        hits = await runtime.retriever.search(
            principal, SearchQuery(query="compost", mode=SearchMode.VECTOR)
        )
        assert [h.document_id for h in hits] == [uuid.UUID(created["id"])]
    finally:
        await owner.execute(grow, collection_id, -1_000_000)
    await assert_exact(owner, tenant_a.id)


async def test_a_common_word_does_not_select_candidates_by_itself(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    """With 1 candidate asked, a word in 20 or more chunks (20 x 1) is too common to select
    chunks: the rarer word picks them, and both words score them."""
    uploads = [
        await upload_text(client, tenant_a.owner, f"Harbour log {n}: the harbour was calm.")
        for n in range(21)
    ]
    keeper = await upload_text(client, tenant_a.owner, "The harbour lighthouse keeper slept.")
    for created in [*uploads, keeper]:
        await wait_done(client, tenant_a.owner, created["id"])
    collections = [uuid.UUID(keeper["collection_id"])]
    call = text(
        "SELECT id FROM mtai_keyword_candidates(CAST(:collections AS uuid[]), :query, :candidates)"
    )
    async with runtime.db.tenant(tenant_a.id) as session:

        async def candidates(query: str, n: int) -> list[uuid.UUID]:
            found = await session.execute(
                call, {"collections": collections, "query": query, "candidates": n}
            )
            return [row[0] for row in found]

        keeper_chunk = (await candidates("lighthouse", 5))[0]
        assert await candidates("harbour lighthouse", 1) == [keeper_chunk]
        # Every word common: the rarest still selects, cut at 20 chunks, so one comes back.
        assert len(await candidates("harbour", 1)) == 1
        # With 50 asked (cap 1,000) "harbour" selects too: all 22 chunks are candidates.
        assert len(await candidates("harbour lighthouse", 50)) == 22


async def test_the_words_together_select_at_most_the_cap(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    """With 1 candidate asked (cap 20), "osprey" (10 chunks) and "kestrel" (15) are each under
    the cap but not together: the rarer selects alone, so the best kestrel chunk, which would
    rank first, is not a candidate."""
    uploads = [
        await upload_text(client, tenant_a.owner, f"Kestrel kestrel kestrel kestrel, log {n}.")
        for n in range(15)
    ] + [
        await upload_text(client, tenant_a.owner, f"An osprey flew by, log {n}.") for n in range(10)
    ]
    for created in uploads:
        await wait_done(client, tenant_a.owner, created["id"])
    call = text(
        "SELECT c.text FROM mtai_keyword_candidates(CAST(:collections AS uuid[]), :query, :n) k "
        "JOIN rag_chunks c ON c.id = k.id"
    )
    params = {"collections": [uuid.UUID(uploads[0]["collection_id"])], "query": "kestrel osprey"}
    async with runtime.db.tenant(tenant_a.id) as session:
        one = (await session.execute(call, params | {"n": 1})).scalars().all()
        many = (await session.execute(call, params | {"n": 50})).scalars().all()
    assert len(one) == 1
    assert "osprey" in one[0]
    # With 50 asked (cap 1,000) both words select, and a kestrel chunk ranks first.
    assert len(many) == 25
    assert "Kestrel" in many[0]
