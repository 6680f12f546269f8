"""A language per knowledge base (migration 0017): its chunks and the queries on them are
parsed with its PostgreSQL text search configuration, changing it reparses every chunk with
the term counts kept exact, and one search spans knowledge bases of several languages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from alembic import command

from mtai.db.migrate import alembic_config
from mtai.db.repositories import documents as documents_repo
from mtai.runtime import Runtime
from mtai.services.retrieval import MAX_VARIANTS
from tests.conftest import TenantFixture
from tests.integration.test_chunk_statistics import assert_exact
from tests.integration.test_rag import COLLECTIONS, SEARCH, upload_text, wait_done
from tests.support.postgres import first_column, fresh_database

HAFEN = "Die alten Häuser am Hafen wurden von den Fischern gebaut und bemalt."
HARBOUR = "The old houses by the harbour were built and painted by the fishermen."


@pytest.fixture
async def owner(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def knowledge_base(
    client: httpx.AsyncClient, tenant: TenantFixture, language: str | None, *texts: str
) -> str:
    name = f"kb-{uuid.uuid4().hex[:6]}"
    body: dict[str, Any] = {"name": name} | ({"language": language} if language else {})
    made = await client.post(COLLECTIONS, json=body, headers=tenant.owner)
    assert made.status_code == 201, made.text
    assert made.json()["language"] == (language or "english")
    for content in texts:
        created = await upload_text(client, tenant.owner, content, collection=name)
        await wait_done(client, tenant.owner, created["id"])
    return str(made.json()["id"])


async def keyword_hits(
    client: httpx.AsyncClient, tenant: TenantFixture, query: str, *collections: str
) -> list[str]:
    found = await client.post(
        SEARCH,
        json={"query": query, "mode": "keyword", "collection_ids": list(collections)},
        headers=tenant.owner,
    )
    assert found.status_code == 200, found.text
    return [h["text"] for h in found.json()["results"]]


async def test_a_german_knowledge_base_stems_and_stops_in_german(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    german = await knowledge_base(client, tenant_a, "german", HAFEN)
    english = await knowledge_base(client, tenant_a, None, HAFEN)
    simple = await knowledge_base(client, tenant_a, "simple", HAFEN)
    # "Haus" finds "Häuser" only where German stemming applies.
    assert await keyword_hits(client, tenant_a, "Haus", german) == [HAFEN]
    assert await keyword_hits(client, tenant_a, "Haus", english) == []
    assert await keyword_hits(client, tenant_a, "Fischer", german) == [HAFEN]
    # German stop words select nothing in German; `simple` keeps every word as it is.
    assert await keyword_hits(client, tenant_a, "und", german) == []
    assert await keyword_hits(client, tenant_a, "und", simple) == [HAFEN]
    assert await keyword_hits(client, tenant_a, "Haus", simple) == []


async def test_one_search_spans_knowledge_bases_of_two_languages(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    german = await knowledge_base(client, tenant_a, "german", HAFEN)
    english = await knowledge_base(client, tenant_a, "english", HARBOUR)
    # Each knowledge base parses the query its own way: "houses" stems to "hous" in English,
    # "Häuser" to "haus" in German.
    both = await keyword_hits(client, tenant_a, "Häuser houses", german, english)
    assert sorted(both) == sorted([HAFEN, HARBOUR])
    hybrid = await client.post(
        SEARCH,
        json={"query": "Häuser houses", "collection_ids": [german, english], "explain": True},
        headers=tenant_a.owner,
    )
    assert {h["text"] for h in hybrid.json()["results"] if h["explain"]["keyword"]} == {
        HAFEN,
        HARBOUR,
    }


async def test_changing_the_language_reparses_the_chunks_with_exact_counts(
    client: httpx.AsyncClient, tenant_a: TenantFixture, owner: asyncpg.Connection
) -> None:
    kb = await knowledge_base(client, tenant_a, None, HAFEN, "Ein Haus, zwei Häuser.")
    assert await keyword_hits(client, tenant_a, "Haus", kb) == ["Ein Haus, zwei Häuser."]
    changed = await client.patch(
        f"{COLLECTIONS}/{kb}", json={"language": "german"}, headers=tenant_a.owner
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["language"] == "german"
    assert sorted(await keyword_hits(client, tenant_a, "Haus", kb)) == sorted(
        [HAFEN, "Ein Haus, zwei Häuser."]
    )
    counts = await assert_exact(owner, tenant_a.id)
    assert counts[(uuid.UUID(kb), "haus")] == 2
    # A document added afterwards is parsed in the new language too.
    name = changed.json()["name"]
    created = await upload_text(client, tenant_a.owner, "Mehrere Häuser.", collection=name)
    await wait_done(client, tenant_a.owner, created["id"])
    assert len(await keyword_hits(client, tenant_a, "Haus", kb)) == 3
    await assert_exact(owner, tenant_a.id)
    audit = await client.get(
        "/api/v1/admin/audit", params={"action": "collection.update"}, headers=tenant_a.owner
    )
    assert any(e["details"].get("language") == "german" for e in audit.json()["items"])


async def test_a_language_change_during_ingestion_leaves_no_chunk_behind(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    owner: asyncpg.Connection,
) -> None:
    """Documents re-processed while their knowledge base changes language, back and forth:
    no deadlock, and every chunk ends in the knowledge base's language with exact counts."""
    texts = [f"{HAFEN} Teil {n}." for n in range(4)]
    kb = await knowledge_base(client, tenant_a, None, *texts)
    async with runtime.db.tenant(tenant_a.id) as session:
        ids = await documents_repo.requeue_collection(session, uuid.UUID(kb))

    async def switch(language: str) -> None:
        changed = await client.patch(
            f"{COLLECTIONS}/{kb}", json={"language": language}, headers=tenant_a.owner
        )
        assert changed.status_code == 200, changed.text

    await asyncio.gather(
        *(runtime.ingestor.process(tenant_a.id, d) for d in ids * 2),
        switch("german"),
        switch("simple"),
        switch("german"),
    )
    for document_id in ids:
        await wait_done(client, tenant_a.owner, str(document_id))
    final = (await client.get(f"{COLLECTIONS}/{kb}", headers=tenant_a.owner)).json()["language"]
    stale = await owner.fetchval(
        "SELECT count(*) FROM rag_chunks c JOIN rag_collections k ON k.id = c.collection_id "
        "WHERE k.id = $1 AND c.language <> k.language",
        uuid.UUID(kb),
    )
    assert stale == 0, final
    await assert_exact(owner, tenant_a.id)


async def test_a_language_is_one_of_postgresql_s_configurations(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    for language in ("klingon", "english'); DROP TABLE rag_chunks; --", "pg_catalog.english"):
        made = await client.post(
            COLLECTIONS, json={"name": "L", "language": language}, headers=tenant_a.owner
        )
        assert made.status_code == 422, made.text
        assert made.json()["code"] == "unknown_language"
    kb = await knowledge_base(client, tenant_a, "french")
    patched = await client.patch(
        f"{COLLECTIONS}/{kb}", json={"language": "elvish"}, headers=tenant_a.owner
    )
    assert patched.status_code == 422, patched.text


async def test_a_search_meets_at_most_so_many_languages_and_weightings(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    languages = ["english", "german", "french", "spanish", "italian"][: MAX_VARIANTS + 1]
    ids = [await knowledge_base(client, tenant_a, language) for language in languages]
    refused = await client.post(
        SEARCH, json={"query": "x", "collection_ids": ids}, headers=tenant_a.owner
    )
    assert refused.status_code == 422, refused.text
    assert "language" in refused.json()["detail"]
    allowed = await client.post(
        SEARCH, json={"query": "x", "collection_ids": ids[:MAX_VARIANTS]}, headers=tenant_a.owner
    )
    assert allowed.status_code == 200, allowed.text


async def _languages(url: str) -> list[object]:
    return await first_column(
        url,
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'language' "
        "AND table_name LIKE 'rag_%' ORDER BY table_name",
    )


async def test_migration_0017_upgrades_downgrades_and_upgrades_again(pg_admin_url: str) -> None:
    with fresh_database(pg_admin_url) as url:
        config = alembic_config(url, "mtai_app")
        await asyncio.to_thread(command.upgrade, config, "0017")
        assert await _languages(url) == ["rag_chunks", "rag_collections"]
        await asyncio.to_thread(command.downgrade, config, "0016")
        assert await _languages(url) == []
        await asyncio.to_thread(command.upgrade, config, "0017")
        assert await _languages(url) == ["rag_chunks", "rag_collections"]
