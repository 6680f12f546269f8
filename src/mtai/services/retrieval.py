"""Search over a tenant's knowledge bases, and the grounding that chat puts in its prompt."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from mtai.db.engine import Database
from mtai.db.models import Collection
from mtai.db.repositories import chunks as chunks_repo
from mtai.db.repositories import collections as collections_repo
from mtai.db.repositories.chunks import Hit, Passage
from mtai.errors import NotFound
from mtai.providers.embeddings.registry import EmbedderRegistry
from mtai.providers.llm.base import Message, Source
from mtai.services.principal import Principal, Scope

# Each list that hybrid search fuses holds this many candidates (at least the limit asked).
CANDIDATES = 50
SNIPPET_CHARS = 300
# Chat retrieves with the user's message; past this length it is not a search query any more.
MAX_QUERY_CHARS = 2000


class SearchMode(StrEnum):
    VECTOR = "vector"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class SearchQuery:
    query: str
    limit: int = 10
    mode: SearchMode = SearchMode.HYBRID
    collection_ids: list[uuid.UUID] | None = None  # None: every knowledge base of the tenant
    document_ids: list[uuid.UUID] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Citation:
    number: int
    document_id: uuid.UUID
    title: str
    chunk_id: uuid.UUID
    snippet: str
    score: float
    heading: str
    page: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "document_id": str(self.document_id),
            "chunk_id": str(self.chunk_id),
        }


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[:limit].rsplit(" ", 1)[0] + " ..."


class Retriever:
    def __init__(self, db: Database, embedders: EmbedderRegistry) -> None:
        self.db = db
        self.embedders = embedders

    async def _collections(
        self, tenant_id: uuid.UUID, ids: list[uuid.UUID] | None
    ) -> list[Collection]:
        async with self.db.tenant(tenant_id) as session:
            found = await collections_repo.many(session, ids)
        if ids is not None:
            missing = set(ids) - {c.id for c in found}
            if missing:
                raise NotFound(
                    f"Knowledge base {sorted(map(str, missing))[0]} not found.",
                    code="collection_not_found",
                )
        return found

    async def search(self, principal: Principal, query: SearchQuery) -> list[Hit]:
        principal.require_scope(Scope.RAG_READ)
        tenant_id = principal.require_tenant()
        collections = await self._collections(tenant_id, query.collection_ids)
        # Vectors of different models are not comparable: one search per embedding model.
        groups: dict[tuple[str, int], list[uuid.UUID]] = defaultdict(list)
        for collection in collections:
            groups[(collection.embedding_model, collection.embedding_dim)].append(collection.id)
        vectors = {}
        if query.mode is not SearchMode.KEYWORD:
            for model, _dim in groups:
                vectors[model] = (await self.embedders.get(model).aembed([query.query]))[0]
        hits: list[Hit] = []
        async with self.db.tenant(tenant_id) as session:
            for (model, dim), ids in groups.items():
                hits += await chunks_repo.search(
                    session,
                    mode=query.mode.value,
                    dim=dim,
                    query_vector=vectors.get(model),
                    query_text=query.query,
                    collection_ids=ids,
                    document_ids=query.document_ids,
                    metadata=query.metadata or None,
                    limit=query.limit,
                    candidates=max(CANDIDATES, query.limit),
                )
        hits.sort(key=lambda h: (-h.score, h.chunk_id))
        return hits[: query.limit]

    async def passage(self, principal: Principal, chunk_id: uuid.UUID) -> Passage:
        """The full text of a passage, e.g. the one a citation names."""
        principal.require_scope(Scope.RAG_READ)
        async with self.db.tenant(principal.require_tenant()) as session:
            found = await chunks_repo.passage(session, chunk_id)
        if found is None:
            raise NotFound(
                "Passage not found: its document may have been deleted or re-processed since.",
                code="passage_not_found",
            )
        return found

    async def ground(
        self,
        principal: Principal,
        messages: list[Message],
        *,
        collection_ids: list[uuid.UUID] | None,
        top_k: int,
    ) -> Grounded:
        """Retrieve for the last message and put the sources in front of it."""
        *earlier, question = messages
        hits = await self.search(
            principal,
            SearchQuery(
                query=question.content[:MAX_QUERY_CHARS],
                limit=top_k,
                collection_ids=collection_ids,
            ),
        )
        return Grounded([*earlier, grounding(hits), question], sources(hits), citations(hits))


@dataclass(frozen=True)
class Grounded:
    messages: list[Message]  # the conversation with the numbered sources before the question
    sources: list[Source]
    citations: list[Citation]


def citations(hits: list[Hit]) -> list[Citation]:
    return [
        Citation(
            number=number,
            document_id=h.document_id,
            title=h.title,
            chunk_id=h.chunk_id,
            snippet=snippet(h.text),
            score=h.score,
            heading=h.heading,
            page=h.page,
        )
        for number, h in enumerate(hits, start=1)
    ]


def sources(hits: list[Hit]) -> list[Source]:
    return [Source(number=n, title=h.title, text=h.text) for n, h in enumerate(hits, start=1)]


def grounding(hits: list[Hit]) -> Message:
    """The system message that hands the model its numbered sources."""
    if not hits:
        return Message(
            "system",
            "No passage of the user's documents matched this question. Say that the documents "
            "do not cover it, then answer only if you are sure, and say that you did so.",
        )
    parts = [
        "Answer the user's question from the numbered sources below, which are passages of "
        "their documents. Cite the sources you use as [1], [2], ... right after the sentence "
        "that uses them. If the sources do not contain the answer, say so; do not invent one."
    ]
    for number, h in enumerate(hits, start=1):
        where = " > ".join(x for x in (h.title, h.heading) if x)
        page = f" (page {h.page})" if h.page is not None else ""
        parts.append(f"[{number}] {where}{page}\n{h.text}")
    return Message("system", "\n\n".join(parts))
