"""RAG through the API: knowledge bases, upload, ingestion, search, chat with citations."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from mtai.db.repositories import documents as documents_repo
from mtai.providers.storage.base import ObjectMissing
from mtai.runtime import Runtime
from mtai.services.principal import operator
from tests.conftest import TenantFixture

DOCS = "/api/v1/rag/documents"
SEARCH = "/api/v1/rag/search"
COLLECTIONS = "/api/v1/rag/collections"

LIGHTHOUSE = """# Lighthouse keeping

## Lamps

The Fresnel lens focuses the lamp's light into a beam that sailors see from twenty miles.
Keepers trimmed the wicks every four hours through the night.

## Fog signals

When fog rolls in, the keeper starts the diaphone, a horn driven by compressed air that
groans twice every minute until the fog lifts.
"""

GARDEN = """Composting at home

Kitchen scraps, dry leaves and a little soil make compost in about three months.
Turn the heap weekly so that air reaches the microbes that break everything down.
"""


async def wait_done(
    client: httpx.AsyncClient, headers: dict[str, str], document_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        response = await client.get(f"{DOCS}/{document_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in ("ready", "failed"):
            return body
        assert time.monotonic() < deadline, f"document still {body['status']}: {body}"
        await asyncio.sleep(0.1)


async def upload_text(
    client: httpx.AsyncClient, headers: dict[str, str], text: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(DOCS, json={"text": text, **fields}, headers=headers)
    assert response.status_code in (200, 202), response.text
    body: dict[str, Any] = response.json()
    return body


async def upload_file(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    name: str,
    data: bytes,
    content_type: str = "application/octet-stream",
    **fields: str,
) -> httpx.Response:
    return await client.post(
        DOCS, files={"file": (name, data, content_type)}, data=fields, headers=headers
    )


def pdf_bytes(*pages: str) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes("Secret plans."))))
    writer.encrypt(user_password="hunter2", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_text_upload_is_ingested_and_found_in_every_mode(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    created = await upload_text(
        client,
        tenant_a.owner,
        LIGHTHOUSE,
        title="Lighthouses",
        content_type="text/markdown",
        metadata={"topic": "sea"},
    )
    assert created["status"] == "queued"
    assert created["duplicate"] is False
    done = await wait_done(client, tenant_a.owner, created["id"])
    assert done["status"] == "ready", done
    assert done["kind"] == "markdown"
    assert done["chunk_count"] >= 1
    assert done["progress"] == 1.0
    assert done["embedding_model"] == "all-MiniLM-L6-v2"

    for mode, query in (
        ("keyword", "diaphone"),
        ("vector", "a horn that sounds when it is foggy"),
        ("hybrid", "fog horn compressed air"),
    ):
        response = await client.post(
            SEARCH, json={"query": query, "mode": mode, "limit": 3}, headers=tenant_a.owner
        )
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert results, (mode, query)
        top = results[0]
        assert top["document_id"] == created["id"]
        assert top["title"] == "Lighthouses"
        assert "diaphone" in top["text"], (mode, top)
        assert top["heading"] == "Lighthouse keeping > Fog signals"
        assert top["metadata"] == {"topic": "sea"}
        if mode == "hybrid":
            assert top["vector_rank"] is not None
            assert top["keyword_rank"] is not None


async def test_multipart_pdf_keeps_pages_and_filters_apply(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    response = await upload_file(
        client,
        tenant_a.owner,
        "manual.pdf",
        pdf_bytes(
            "Chapter one is about anchors. " + "Hold fast and check the chain. " * 60,
            "Chapter two explains tidal currents. " + "Water moves with the moon. " * 60,
        ),
        "application/pdf",
        title="Seamanship",
        metadata=json.dumps({"team": "ops"}),
    )
    assert response.status_code == 202, response.text
    pdf = await wait_done(client, tenant_a.owner, response.json()["id"])
    assert (pdf["status"], pdf["kind"]) == ("ready", "pdf"), pdf
    other = await upload_text(client, tenant_a.owner, GARDEN, metadata={"team": "garden"})
    assert (await wait_done(client, tenant_a.owner, other["id"]))["status"] == "ready"

    found = await client.post(
        SEARCH, json={"query": "moon", "mode": "keyword"}, headers=tenant_a.owner
    )
    # A chunk's page is the page where it starts; this text runs over both pages.
    pages = {r["page"] for r in found.json()["results"] if "moon" in r["text"]}
    assert pages == {1, 2}, found.json()
    only_ops = await client.post(
        SEARCH,
        json={"query": "compost heap", "filters": {"metadata": {"team": "ops"}}},
        headers=tenant_a.owner,
    )
    assert {r["document_id"] for r in only_ops.json()["results"]} <= {pdf["id"]}
    only_garden_doc = await client.post(
        SEARCH,
        json={"query": "anchors", "filters": {"document_ids": [other["id"]]}},
        headers=tenant_a.owner,
    )
    assert {r["document_id"] for r in only_garden_doc.json()["results"]} == {other["id"]}


async def test_duplicate_content_is_recognised(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    first = await upload_text(client, tenant_a.owner, GARDEN, title="one")
    again = await client.post(DOCS, json={"text": GARDEN, "title": "two"}, headers=tenant_a.owner)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["id"] == first["id"]
    listed = await client.get(DOCS, headers=tenant_a.owner)
    assert listed.json()["total"] == 1


async def test_upload_limits_and_bad_requests(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    await runtime.tenants.update(
        operator(), tenant_a.id, settings={"max_upload_bytes": 1000, "max_documents": 1}
    )
    too_big = await upload_file(client, tenant_a.owner, "big.txt", b"x" * 1001, "text/plain")
    assert too_big.status_code == 413
    assert "limit is 1000" in too_big.json()["detail"]
    await upload_text(client, tenant_a.owner, "The only document allowed.")
    second = await client.post(DOCS, json={"text": "One more."}, headers=tenant_a.owner)
    assert second.status_code == 403
    assert second.json()["code"] == "document_limit"

    raw = await client.post(
        DOCS, content=b"hello", headers={**tenant_a.owner, "Content-Type": "text/plain"}
    )
    assert raw.status_code == 415
    assert "multipart/form-data" in raw.json()["detail"]
    no_file = await client.post(
        DOCS, data={"title": "x"}, files={"other": ("a", b"b")}, headers=tenant_a.owner
    )
    assert no_file.status_code == 422
    assert "'file'" in no_file.json()["detail"]
    bad_meta = await upload_file(client, tenant_a.owner, "a.txt", b"abc", metadata="[1,2]")
    assert bad_meta.status_code == 422
    empty_text = await client.post(DOCS, json={"text": ""}, headers=tenant_a.owner)
    assert empty_text.status_code == 422
    unknown = await client.post(
        DOCS, json={"text": "hi", "collection": "nope"}, headers=tenant_a.owner
    )
    assert unknown.status_code == 404
    assert "Create it first" in unknown.json()["detail"]
    bad_search = await client.post(
        SEARCH, json={"query": "x", "mode": "magic"}, headers=tenant_a.owner
    )
    assert bad_search.status_code == 422


async def test_a_key_without_rag_write_can_search_but_not_upload(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    made = await client.post(
        "/api/v1/keys", json={"name": "reader", "scopes": ["rag:read"]}, headers=tenant_a.owner
    )
    reader = {"X-API-Key": made.json()["key"]}
    response = await client.post(DOCS, json={"text": "hello"}, headers=reader)
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    searched = await client.post(SEARCH, json={"query": "hello"}, headers=reader)
    assert searched.status_code == 200


@pytest.mark.parametrize(
    ("name", "data", "content_type", "expected"),
    [
        ("empty.txt", b"", "text/plain", "empty"),
        ("blank.md", b"  \n\n \t", "text/markdown", "empty"),
        ("photo.pdf", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "application/pdf", "not a PDF"),
        ("notes.pdf", b"just some words", "application/pdf", "not a PDF"),
        ("broken.pdf", b"%PDF-1.7\n1 0 obj <<", "application/pdf", "PDF"),
        ("report.docx", b"PK\x03\x04garbage", "application/octet-stream", "DOCX"),
        ("data.json", b'{"a": 1,,}', "application/json", "JSON"),
    ],
)
async def test_bad_files_end_failed_with_a_clear_error(
    client: httpx.AsyncClient,
    tenant_a: TenantFixture,
    name: str,
    data: bytes,
    content_type: str,
    expected: str,
) -> None:
    response = await upload_file(client, tenant_a.owner, name, data, content_type)
    assert response.status_code == 202, response.text
    done = await wait_done(client, tenant_a.owner, response.json()["id"])
    assert done["status"] == "failed"
    assert done["chunk_count"] == 0
    assert expected.lower() in done["error"].lower(), done["error"]


async def test_encrypted_pdf_fails_and_the_worker_goes_on(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    locked = await upload_file(
        client, tenant_a.owner, "locked.pdf", encrypted_pdf(), "application/pdf"
    )
    done = await wait_done(client, tenant_a.owner, locked.json()["id"])
    assert done["status"] == "failed", done
    assert "password" in done["error"].lower(), done
    fine = await upload_text(client, tenant_a.owner, GARDEN)
    assert (await wait_done(client, tenant_a.owner, fine["id"]))["status"] == "ready"


async def test_delete_removes_chunks_and_the_original(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    created = await upload_text(client, tenant_a.owner, LIGHTHOUSE)
    await wait_done(client, tenant_a.owner, created["id"])
    async with runtime.db.tenant(tenant_a.id) as session:
        document = await documents_repo.get(session, uuid.UUID(created["id"]))
    assert document is not None
    assert await runtime.store.get(document.storage_key) == LIGHTHOUSE.encode()

    deleted = await client.delete(f"{DOCS}/{created['id']}", headers=tenant_a.owner)
    assert deleted.status_code == 204
    assert (await client.get(f"{DOCS}/{created['id']}", headers=tenant_a.owner)).status_code == 404
    with pytest.raises(ObjectMissing):
        await runtime.store.get(document.storage_key)
    found = await client.post(SEARCH, json={"query": "diaphone"}, headers=tenant_a.owner)
    assert found.json()["results"] == []
    stats = (await client.get("/api/v1/rag/stats", headers=tenant_a.owner)).json()
    assert stats["documents"] == 0
    assert stats["chunks"] == 0


async def test_reingesting_never_duplicates_chunks(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    created = await upload_text(client, tenant_a.owner, LIGHTHOUSE)
    first = await wait_done(client, tenant_a.owner, created["id"])
    document_id = uuid.UUID(created["id"])
    before = await client.post(SEARCH, json={"query": "Fresnel lens"}, headers=tenant_a.owner)

    # A redelivered message for a finished document is a no-op...
    await runtime.ingestor.process(tenant_a.id, document_id)
    # ...and a forced re-run replaces the chunks with identical ones (same ids).
    async with runtime.db.tenant(tenant_a.id) as session:
        await documents_repo.requeue_collection(session, uuid.UUID(first["collection_id"]))
    await asyncio.gather(*(runtime.ingestor.process(tenant_a.id, document_id) for _ in range(3)))
    again = await wait_done(client, tenant_a.owner, created["id"])
    assert again["status"] == "ready"
    assert again["chunk_count"] == first["chunk_count"]
    stats = (await client.get("/api/v1/rag/stats", headers=tenant_a.owner)).json()
    assert stats["chunks"] == first["chunk_count"]
    after = await client.post(SEARCH, json={"query": "Fresnel lens"}, headers=tenant_a.owner)
    assert [r["chunk_id"] for r in after.json()["results"]] == [
        r["chunk_id"] for r in before.json()["results"]
    ]


async def test_a_dead_workers_document_is_taken_over(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    created = await upload_text(client, tenant_a.owner, GARDEN)
    await wait_done(client, tenant_a.owner, created["id"])
    document_id = uuid.UUID(created["id"])
    async with runtime.db.tenant(tenant_a.id) as session:
        await documents_repo.requeue_collection(session, uuid.UUID(created["collection_id"]))
        # A worker claims it with a short lease and dies without a word.
        assert await documents_repo.claim(session, document_id, 0.2) == 1
    await asyncio.sleep(0.4)
    sent: list[uuid.UUID] = []

    async def enqueue(tenant_id: uuid.UUID, doc_id: uuid.UUID) -> None:
        sent.append(doc_id)
        await runtime.ingestor.process(tenant_id, doc_id)

    # The runtime's own reaper loop may look first; either way the document is sent once.
    await runtime.ingestor.reap(enqueue)
    done = await wait_done(client, tenant_a.owner, created["id"])
    assert done["status"] == "ready"
    assert done["attempts"] == 2
    assert sent.count(document_id) <= 1
    # Finished documents are never sent again.
    await runtime.ingestor.reap(enqueue)
    assert sent.count(document_id) <= 1


async def test_collections_lifecycle(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    made = await client.post(
        COLLECTIONS, json={"name": "Handbook", "description": "HR"}, headers=tenant_a.owner
    )
    assert made.status_code == 201, made.text
    collection = made.json()
    assert collection["embedding_model"] == "all-MiniLM-L6-v2"
    assert collection["embedding_dim"] == 384
    clash = await client.post(COLLECTIONS, json={"name": "handbook"}, headers=tenant_a.owner)
    assert clash.status_code == 409
    unknown_model = await client.post(
        COLLECTIONS, json={"name": "X", "embedding_model": "nope"}, headers=tenant_a.owner
    )
    assert unknown_model.status_code == 422
    assert "all-MiniLM-L6-v2" in unknown_model.text

    document = await upload_text(client, tenant_a.owner, GARDEN, collection="Handbook")
    assert document["collection_id"] == collection["id"]
    await wait_done(client, tenant_a.owner, document["id"])
    elsewhere = await upload_text(client, tenant_a.owner, LIGHTHOUSE)
    await wait_done(client, tenant_a.owner, elsewhere["id"])
    scoped = await client.post(
        SEARCH,
        json={"query": "compost lighthouse", "collection_ids": [collection["id"]]},
        headers=tenant_a.owner,
    )
    assert {r["document_id"] for r in scoped.json()["results"]} == {document["id"]}

    renamed = await client.patch(
        f"{COLLECTIONS}/{collection['id']}", json={"name": "People"}, headers=tenant_a.owner
    )
    assert renamed.status_code == 200
    assert renamed.json()["reembedding"] == 0
    listed = await client.get(COLLECTIONS, headers=tenant_a.owner)
    assert {c["name"] for c in listed.json()["items"]} == {"People", "default"}

    async with runtime.db.tenant(tenant_a.id) as session:
        stored = await documents_repo.get(session, uuid.UUID(document["id"]))
    assert stored is not None
    gone = await client.delete(f"{COLLECTIONS}/{collection['id']}", headers=tenant_a.owner)
    assert gone.status_code == 204
    assert (await client.get(f"{DOCS}/{document['id']}", headers=tenant_a.owner)).status_code == 404
    with pytest.raises(ObjectMissing):
        await runtime.store.get(stored.storage_key)


HANDBUCH = {
    "Löschen": "rm entfernt Dateien und Verzeichnisse. Mit -r werden ganze Verzeichnisbäume "
    "gelöscht, mit -i fragt rm vor jedem Löschen nach.",
    "Einhängen": "mount hängt ein Dateisystem an einen Einhängepunkt ein; umount löst es "
    "wieder, sobald keine Datei darauf mehr geöffnet ist.",
    "Kopieren": "cp kopiert Dateien. Mit -a bleiben Rechte, Eigentümer und Zeitstempel erhalten.",
}


async def test_a_german_knowledge_base_on_the_multilingual_model(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    """multilingual-e5-small embeds passages behind "passage: " and queries behind "query: "
    (what the model was trained on); a German question finds its German answer."""
    made = await client.post(
        COLLECTIONS,
        json={"name": "Handbuch", "embedding_model": "multilingual-e5-small", "language": "german"},
        headers=tenant_a.owner,
    )
    assert made.status_code == 201, made.text
    assert made.json()["embedding_dim"] == 384
    ids = {}
    for title, body in HANDBUCH.items():
        created = await upload_text(
            client, tenant_a.owner, body, title=title, collection="Handbuch"
        )
        done = await wait_done(client, tenant_a.owner, created["id"])
        assert (done["status"], done["embedding_model"]) == ("ready", "multilingual-e5-small")
        ids[done["id"]] = title
    question = "Wie lösche ich einen Ordner samt Inhalt?"
    response = await client.post(
        SEARCH,
        json={"query": question, "mode": "vector", "collection_ids": [made.json()["id"]]},
        headers=tenant_a.owner,
    )
    assert response.status_code == 200, response.text
    hits = response.json()["results"]
    assert ids[hits[0]["document_id"]] == "Löschen", hits
    embedder = runtime.embedders.get("multilingual-e5-small")
    (query,) = await embedder.aembed([f"query: {question}"])
    passages = await embedder.aembed([f"passage: {t}\n{HANDBUCH[t]}" for t in HANDBUCH])
    expected = {title: float(row @ query) for title, row in zip(HANDBUCH, passages, strict=True)}
    for hit in hits:
        assert hit["score"] == pytest.approx(expected[ids[hit["document_id"]]], abs=1e-4), hit


async def test_native_chat_with_rag_cites_its_sources(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    created = await upload_text(client, tenant_a.owner, LIGHTHOUSE, title="Lighthouses")
    await wait_done(client, tenant_a.owner, created["id"])
    answer = await client.post(
        "/api/v1/chat/",
        json={"message": "How does the fog signal work?", "use_rag": True},
        headers=tenant_a.owner,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["citations"], body
    first = body["citations"][0]
    assert first["number"] == 1
    assert first["document_id"] == created["id"]
    assert first["title"] == "Lighthouses"
    assert "diaphone" in first["snippet"]
    # The extractive answerer (no model configured) quotes the numbered sources.
    assert "[1] Lighthouses" in body["response"]
    assert "diaphone" in body["response"]

    conversation = await client.get(
        f"/api/v1/chat/conversations/{body['conversation_id']}", headers=tenant_a.owner
    )
    saved = conversation.json()["messages"]
    assert saved[0]["citations"] == []
    assert saved[1]["citations"][0]["chunk_id"] == first["chunk_id"]

    async with client.stream(
        "POST",
        "/api/v1/chat/",
        json={"message": "fog signal", "use_rag": True, "stream": True},
        headers=tenant_a.owner,
    ) as stream:
        text = "".join([line async for line in stream.aiter_lines()])
    assert '"citations":[{' in text
    assert "event: done" in text


async def test_a_citation_opens_its_passage_in_its_tenant_only(
    client: httpx.AsyncClient, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    created = await upload_text(client, tenant_a.owner, LIGHTHOUSE, title="Lighthouses")
    await wait_done(client, tenant_a.owner, created["id"])
    answer = await client.post(
        "/api/v1/chat/",
        json={"message": "How does the fog signal work?", "use_rag": True},
        headers=tenant_a.owner,
    )
    cited = answer.json()["citations"][0]
    passage = await client.get(f"/api/v1/rag/chunks/{cited['chunk_id']}", headers=tenant_a.member)
    assert passage.status_code == 200, passage.text
    body = passage.json()
    assert body["chunk_id"] == cited["chunk_id"]
    assert body["document_id"] == created["id"]
    assert body["title"] == "Lighthouses"
    assert body["heading"] == cited["heading"]
    # The whole passage, of which the citation's snippet is the start.
    assert " ".join(body["text"].split()).startswith(cited["snippet"].removesuffix(" ..."))

    other = await client.get(f"/api/v1/rag/chunks/{cited['chunk_id']}", headers=tenant_b.owner)
    assert other.status_code == 404
    assert other.json()["code"] == "passage_not_found"
    bad = await client.get("/api/v1/rag/chunks/not-an-id", headers=tenant_a.owner)
    assert bad.status_code == 422

    await client.delete(f"{DOCS}/{created['id']}", headers=tenant_a.owner)
    gone = await client.get(f"/api/v1/rag/chunks/{cited['chunk_id']}", headers=tenant_a.owner)
    assert gone.status_code == 404
    assert "deleted" in gone.json()["detail"]


async def test_openai_api_with_rag_returns_citations(
    client: httpx.AsyncClient, tenant_a: TenantFixture
) -> None:
    created = await upload_text(client, tenant_a.owner, GARDEN, title="Compost")
    await wait_done(client, tenant_a.owner, created["id"])
    response = await client.post(
        "/v1/chat/completions",
        json={
            "model": "extractive",
            "messages": [{"role": "user", "content": "How long does compost take?"}],
            "use_rag": True,
        },
        headers=tenant_a.api_key,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["citations"][0]["document_id"] == created["id"]
    assert "three months" in body["choices"][0]["message"]["content"]

    async with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "extractive",
            "messages": [{"role": "user", "content": "compost"}],
            "use_rag": True,
            "stream": True,
        },
        headers=tenant_a.api_key,
    ) as stream:
        lines = [line async for line in stream.aiter_lines() if line.startswith("data: {")]
    assert json.loads(lines[0][len("data: ") :])["citations"][0]["title"] == "Compost"


async def test_health_reports_storage_and_queue(client: httpx.AsyncClient) -> None:
    body = (await client.get("/health")).json()
    assert body["checks"]["storage"] == {"status": "ok", "backend": "local"}
    assert body["checks"]["queue"] == {"status": "ok", "backend": "inprocess"}
