"""`mtai eval retrieval`: ingest a dataset into a throwaway tenant, search it in every mode, score.

Everything goes through the product's own path (upload, worker pipeline, search SQL), so the
numbers describe what users get. The tenant is deleted afterwards, stored originals included.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence

from mtai.db.repositories.chunks import Candidate
from mtai.rag.evaluation import Dataset, ModeScores, dedupe_documents, score_mode
from mtai.services.documents import DocumentService, Upload
from mtai.services.ingestion import Ingestor
from mtai.services.knowledge_bases import KnowledgeBaseService
from mtai.services.principal import ALL_SCOPES, Principal, Role, operator
from mtai.services.rank_fusion import Fusion, rank
from mtai.services.retrieval import Hit, Retriever, SearchMode, SearchQuery
from mtai.services.tenants import TenantService

# Chunks fetched per query so that enough distinct documents remain after deduplication.
CHUNKS_PER_QUERY = 50
POLL_SECONDS = 0.2
INGEST_CONCURRENCY = 4  # documents in the pipeline at once
Progress = Callable[[str], None]


class EvaluationFailed(Exception):
    """The dataset could not be ingested; the message names the documents."""


async def _ingest(
    principal: Principal,
    dataset: Dataset,
    documents: DocumentService,
    ingestor: Ingestor,
    collection: str,
) -> dict[uuid.UUID, str]:
    """Upload and ingest every document; platform document id -> dataset document id."""
    ids: dict[uuid.UUID, str] = {}
    for doc in dataset.documents:
        uploaded = await documents.upload(
            principal,
            Upload(
                data=doc.text.encode(),
                filename=None,
                content_type="text/plain",
                title=doc.title,
                description="",
                collection=collection,
                metadata={"eval_id": doc.id},
            ),
        )
        ids[uploaded.document.id] = doc.id
    # Run the pipeline here, whatever queue the deployment uses; a document that a queue
    # consumer took first is waited for (the lease lets only one of them work on it).
    tenant_id = principal.require_tenant()
    # Bounded: hundreds of documents at once would wait on the pool past its timeout.
    gate = asyncio.Semaphore(INGEST_CONCURRENCY)

    async def process(document_id: uuid.UUID) -> None:
        async with gate:
            await ingestor.process(tenant_id, document_id)

    await asyncio.gather(*(process(i) for i in ids))
    failed = []
    for document_id in ids:
        document = await documents.get(principal, document_id)
        while document.status in ("queued", "processing"):
            await asyncio.sleep(POLL_SECONDS)
            document = await documents.get(principal, document_id)
        if document.status != "ready":
            failed.append(f"{ids[document_id]}: {document.error}")
    if failed:
        raise EvaluationFailed("Documents did not ingest: " + "; ".join(failed[:5]))
    return ids


async def evaluate(
    dataset: Dataset,
    *,
    tenants: TenantService,
    knowledge_bases: KnowledgeBaseService,
    documents: DocumentService,
    ingestor: Ingestor,
    retriever: Retriever,
    k: int = 10,
    embedding_model: str | None = None,
    fusions: Sequence[Fusion] = (),
    variants: Mapping[str, Retriever] | None = None,
    languages: Sequence[str] = (),
    progress: Progress = lambda _: None,
) -> list[ModeScores]:
    """A row per search mode, through the product's search; then a row per fusion of
    `fusions`, computed from the vector and keyword lists those searches returned (the same
    lists hybrid search fuses), so that weights can be compared without searching again; then
    keyword and hybrid rows for each of `variants`, retrievers configured otherwise (the other
    keyword ranking), labelled by their key; then keyword and hybrid rows with the knowledge
    base switched to each of `languages` (its chunks parsed again, not embedded again), labelled
    "<mode> in <language>". The knowledge base embeds with `embedding_model` (None: the
    deployment's default)."""
    tenant, _ = await tenants.create(
        operator(), slug=f"eval-{secrets.token_hex(4)}", name="Retrieval evaluation"
    )
    principal = Principal(tenant_id=tenant.id, role=Role.OWNER, scopes=ALL_SCOPES)
    try:
        progress(f"ingesting {len(dataset.documents)} documents")
        base = await knowledge_bases.create(
            principal,
            name="evaluation",
            description="",
            embedding_model=embedding_model,
            language=dataset.language,
        )
        ids = await _ingest(principal, dataset, documents, ingestor, str(base.id))
        scores = []
        lists: dict[SearchMode, dict[str, list[Hit]]] = {}

        async def search(searcher: Retriever, mode: SearchMode, label: str) -> dict[str, list[Hit]]:
            progress(f"searching {len(dataset.queries)} queries, {label}")
            found: dict[str, list[Hit]] = {}
            for query in dataset.queries:
                found[query.id] = await searcher.search(
                    principal, SearchQuery(query=query.query, limit=CHUNKS_PER_QUERY, mode=mode)
                )
            rankings = {
                q: dedupe_documents([ids[h.document_id] for h in hits]) for q, hits in found.items()
            }
            scores.append(score_mode(label, rankings, dataset, k))
            return found

        for mode in SearchMode:
            lists[mode] = await search(retriever, mode, mode.value)
        for fusion in fusions:
            rankings = {}
            for query in dataset.queries:
                vector, keyword = (
                    lists[SearchMode.VECTOR][query.id],
                    lists[SearchMode.KEYWORD][query.id],
                )
                document_of = {h.chunk_id: ids[h.document_id] for h in (*vector, *keyword)}
                ranked = rank(
                    [Candidate(h.chunk_id, h.score) for h in vector],
                    [Candidate(h.chunk_id, h.score) for h in keyword],
                    CHUNKS_PER_QUERY,
                    fusion,
                )
                rankings[query.id] = dedupe_documents([document_of[r.chunk_id] for r in ranked])
            scores.append(score_mode(f"hybrid {fusion.label()}", rankings, dataset, k))
        for label, variant in (variants or {}).items():
            for mode in (SearchMode.KEYWORD, SearchMode.HYBRID):
                await search(variant, mode, f"{mode.value} {label}")
        for language in languages:
            await knowledge_bases.update(
                principal,
                base.id,
                name=None,
                description=None,
                embedding_model=None,
                language=language,
            )
            for mode in (SearchMode.KEYWORD, SearchMode.HYBRID):
                await search(retriever, mode, f"{mode.value} in {language}")
        return scores
    finally:
        await tenants.delete(operator(), tenant.id)
