"""Keyword search ranks by BM25 over the knowledge base's kept counts (migration 0015): the
scores are the formula's, computed here from the chunks themselves, for any k1 and b; ts_rank
stays available to compare with."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from alembic import command
from sqlalchemy import text

from mtai.db.migrate import alembic_config
from mtai.runtime import Runtime
from mtai.services.principal import ALL_SCOPES, Principal, Role
from mtai.services.retrieval import Bm25, Retriever, SearchMode, SearchQuery
from tests.conftest import TenantFixture
from tests.integration.test_rag import COLLECTIONS, upload_text, wait_done
from tests.support.postgres import first_column, fresh_database

PASSAGES = (
    "The lighthouse keeper trimmed the lamp. The lamp burned all night.",
    "A keeper of bees kept a hive near the harbour wall, far from any lighthouse.",
    "Fog rolled over the harbour; the fog horn sounded and the lighthouse lamp turned slowly "
    "above the rocks where ships had wrecked in storms for two hundred years.",
    "Harbour dues were paid in silver.",
    "The lamp room held oil, wicks, brushes and a logbook of every night's weather.",
)
QUERY = "lighthouse lamp keeper fog"
CALL = text(
    "SELECT id, score FROM mtai_keyword_candidates(CAST(:collections AS uuid[]), :query, 10, "
    "NULL, NULL, CAST(:k1 AS real), CAST(:b AS real))"
)


@pytest.fixture
async def owner(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def _knowledge_base(client: httpx.AsyncClient, tenant: TenantFixture, name: str) -> str:
    made = await client.post(COLLECTIONS, json={"name": name}, headers=tenant.owner)
    assert made.status_code == 201, made.text
    for passage in PASSAGES:
        created = await upload_text(client, tenant.owner, passage, collection=name)
        await wait_done(client, tenant.owner, created["id"])
    return str(made.json()["id"])


async def expected_bm25(
    owner: asyncpg.Connection, collection_id: uuid.UUID, query: str, k1: float, b: float
) -> dict[uuid.UUID, float]:
    """BM25 computed from the chunks' tsvectors, independently of the kept counts."""
    words = set(await owner.fetchval("SELECT tsvector_to_array(to_tsvector('english', $1))", query))
    rows = await owner.fetch(
        "SELECT c.id, length(c.tsv) AS length, u.lexeme, cardinality(u.positions) AS tf "
        "FROM rag_chunks c, unnest(c.tsv) u WHERE c.collection_id = $1",
        collection_id,
    )
    lengths = {r["id"]: r["length"] for r in rows}
    df = Counter(r["lexeme"] for r in rows)
    n, average = len(lengths), sum(lengths.values()) / len(lengths)
    scores: dict[uuid.UUID, float] = {}
    for r in rows:
        if r["lexeme"] not in words:
            continue
        idf = math.log(1 + (n - df[r["lexeme"]] + 0.5) / (df[r["lexeme"]] + 0.5))
        tf, norm = r["tf"], 1 - b + b * r["length"] / average
        scores[r["id"]] = scores.get(r["id"], 0.0) + idf * tf * (k1 + 1) / (tf + k1 * norm)
    return scores


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (2.0, 0.0), (0.5, 1.0)])
async def test_keyword_scores_are_bm25_over_the_knowledge_base(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    owner: asyncpg.Connection,
    k1: float,
    b: float,
) -> None:
    collection_id = uuid.UUID(await _knowledge_base(client, tenant_a, "Bm25"))
    # Another knowledge base with the same words changes nothing: its counts are its own.
    await _knowledge_base(client, tenant_a, "Other")
    expected = await expected_bm25(owner, collection_id, QUERY, k1, b)
    assert len(expected) == 4  # every passage but the harbour dues has a query word
    params = {"collections": [collection_id], "query": QUERY, "k1": k1, "b": b}
    async with runtime.db.tenant(tenant_a.id) as session:
        found = (await session.execute(CALL, params)).all()
    scores = {row[0]: row[1] for row in found}
    assert scores == pytest.approx(expected, rel=1e-4)
    assert [row[1] for row in found] == sorted(scores.values(), reverse=True)


async def test_the_rarer_word_counts_more_and_ts_rank_stays_to_compare(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    """ "lamp" is in three passages, "bees" in one. BM25 puts the bee keeper first for "lamp
    bees"; ts_rank, blind to how common a word is, prefers the passage saying "lamp" twice."""
    await _knowledge_base(client, tenant_a, "Rare")
    principal = Principal(tenant_id=tenant_a.id, role=Role.OWNER, scopes=ALL_SCOPES)
    query = SearchQuery(query="lamp bees", limit=5, mode=SearchMode.KEYWORD)
    bm25 = await Retriever(runtime.db, runtime.embedders, bm25=Bm25()).search(principal, query)
    ts_rank = await runtime.retriever.search(principal, query)  # the platform's default
    assert "bees" in bm25[0].text
    assert "lamp burned" in ts_rank[0].text
    assert {h.chunk_id for h in bm25} == {h.chunk_id for h in ts_rank}


async def _has_lexemes(url: str) -> bool:
    return bool(
        await first_column(
            url,
            "SELECT column_name FROM information_schema.columns WHERE table_name = "
            "'rag_collection_sizes' AND column_name = 'lexemes'",
        )
    )


async def test_migration_0015_upgrades_downgrades_and_upgrades_again(pg_admin_url: str) -> None:
    with fresh_database(pg_admin_url) as url:
        config = alembic_config(url, "mtai_app")
        await asyncio.to_thread(command.upgrade, config, "0015")
        assert await _has_lexemes(url)
        await asyncio.to_thread(command.downgrade, config, "0014")
        assert not await _has_lexemes(url)
        await asyncio.to_thread(command.upgrade, config, "0015")
        assert await _has_lexemes(url)
