"""Search over a tenant's knowledge bases, and the grounding that chat puts in its prompt."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.engine import Database
from mtai.db.models import Collection
from mtai.db.repositories import chunks as chunks_repo
from mtai.db.repositories import collections as collections_repo
from mtai.db.repositories.chunks import Candidate, Passage
from mtai.errors import InvalidInput, NotFound, ServiceUnavailable
from mtai.providers.embeddings.registry import EmbedderRegistry
from mtai.providers.llm.base import Message, Source
from mtai.providers.rerank.base import Reranker
from mtai.services.metering import Meter, provider_of
from mtai.services.principal import Principal, Scope
from mtai.services.rank_fusion import DEFAULT_FUSION, Fusion, Ranked, Weights, rank

Vector = npt.NDArray[np.float32]

# Each list that hybrid search fuses holds this many candidates (at least the limit asked).
CANDIDATES = 50
SNIPPET_CHARS = 300
# Distinct knowledge-base (weights, language) pairs one search may meet (each is a search
# of its own).
MAX_VARIANTS = 4
# Chat retrieves with the user's message; past this length it is not a search query any more.
MAX_QUERY_CHARS = 2000
# Fused passages a reranked search reorders (MTAI_RERANK_CANDIDATES).
RERANK_CANDIDATES = 20


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
    weights: Weights | None = None  # hybrid's; None: each knowledge base's, else the default
    rerank: bool | None = None  # None: when a knowledge base searched turns reranking on


@dataclass(frozen=True)
class Hit(Passage):
    score: float
    vector_rank: int | None
    keyword_rank: int | None
    vector_score: float | None = None  # the cosine similarity
    keyword_score: float | None = None  # the keyword rank's score
    fusion: Fusion | None = None  # what fused the two lists, in hybrid mode
    fused_score: float = 0.0  # the score before reranking (`score` unless reranked)
    rerank_score: float | None = None

    @classmethod
    def of(cls, passage: Passage, ranked: Ranked) -> Hit:
        return cls(
            **asdict(passage),
            score=ranked.score,
            fused_score=ranked.score,
            vector_rank=ranked.vector_rank,
            keyword_rank=ranked.keyword_rank,
            vector_score=ranked.vector_score,
            keyword_score=ranked.keyword_score,
            fusion=ranked.fusion,
        )


@dataclass(frozen=True)
class CandidateScope:
    """Where a search looks, and how many candidates each of its lists holds."""

    collection_ids: list[uuid.UUID]
    document_ids: list[uuid.UUID] | None
    metadata: dict[str, Any] | None
    candidates: int

    def filters(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Bm25:
    """Keyword search's BM25 parameters (Robertson's defaults)."""

    k1: float = 1.2
    b: float = 0.75


def weights_of(collection: Collection) -> Weights | None:
    vector, keyword = collection.vector_weight, collection.keyword_weight
    return None if vector is None or keyword is None else Weights(vector, keyword)


def _candidates(query: SearchQuery) -> int:
    return max(CANDIDATES, query.limit)


async def _ready(vector: Vector) -> Vector:
    return vector


class SpareConnections:
    """How many searches may hold a second pooled connection at once. Bounded well below the
    pool, so searches waiting for their second connection can never hold the whole pool; when
    none is spare, a search runs both parts on one connection, one after the other."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def take(self) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def give_back(self) -> None:
        self.in_use -= 1


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


def passage_text(hit: Passage) -> str:
    """A passage as a reranker reads it: where it is, then what it says."""
    where = " > ".join(x for x in (hit.title, hit.heading) if x)
    return f"{where}\n{hit.text}" if where else hit.text


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[:limit].rsplit(" ", 1)[0] + " ..."


class Retriever:
    def __init__(
        self,
        db: Database,
        embedders: EmbedderRegistry,
        spare_connections: int | None = None,
        *,
        meter: Meter | None = None,
        bm25: Bm25 | None = None,
        reranker: Reranker | None = None,
        rerank_candidates: int = RERANK_CANDIDATES,
    ) -> None:
        """`spare_connections`: searches that may run their keyword part on a second pooled
        connection at once (default: half the pool). `meter`: admits and records each search
        (the runtime always gives one). `bm25`: keyword search ranks by BM25 with these
        parameters; None (the default) by PostgreSQL's ts_rank. `reranker`: reorders the best
        `rerank_candidates` fused passages of searches that ask for it (or of knowledge bases
        that turn it on)."""
        self.db = db
        self.embedders = embedders
        self.meter = meter
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self.bm25 = None if bm25 is None else (bm25.k1, bm25.b)
        limit = max(1, db.pool_size // 2) if spare_connections is None else spare_connections
        self.spare = SpareConnections(limit)

    @staticmethod
    async def _collections(session: AsyncSession, ids: list[uuid.UUID] | None) -> list[Collection]:
        found = await collections_repo.many(session, ids)
        if ids is not None:
            missing = set(ids) - {c.id for c in found}
            if missing:
                raise NotFound(
                    f"Knowledge base {sorted(map(str, missing))[0]} not found.",
                    code="collection_not_found",
                )
        return found

    def query_tokens(self, query: SearchQuery) -> tuple[str, int]:
        """The embedding model a query is metered under (the default one) and its tokens."""
        if query.mode is SearchMode.KEYWORD:
            return self.embedders.default_name, 0
        embedder = self.embedders.get(self.embedders.default_name)
        tokens = embedder.count_tokens(embedder.query_prefix + query.query)
        return embedder.name, min(tokens, embedder.max_tokens)

    async def search(
        self,
        principal: Principal,
        query: SearchQuery,
        *,
        embedded: Mapping[str, Vector] | None = None,
    ) -> list[Hit]:
        """A search: admitted by the limits and budgets (before the query is embedded) and
        recorded in the usage ledger with its embedding tokens.

        `embedded`: the query's embedding by model name, when the caller has it already."""
        principal.require_scope(Scope.RAG_READ)
        if self.meter is None:
            return await self._search(principal, query, embedded=embedded)
        model, tokens = self.query_tokens(query)
        async with self.meter.embedding(
            principal, model=model, provider=provider_of(model), tokens=tokens, api="rag_search"
        ):
            return await self._search(principal, query, embedded=embedded)

    async def _search(
        self,
        principal: Principal,
        query: SearchQuery,
        *,
        embedded: Mapping[str, Vector] | None = None,
    ) -> list[Hit]:
        principal.require_scope(Scope.RAG_READ)
        tenant_id = principal.require_tenant()
        vectors = dict(embedded or {})
        # Most knowledge bases use the default model: its embedding of the query starts now,
        # alongside the lookup, and is dropped if no knowledge base searched uses it.
        default = self.embedders.default_name
        early = None
        embedding: dict[str, asyncio.Task[Vector]] = {}
        if query.mode is not SearchMode.KEYWORD and default not in vectors:
            early = asyncio.create_task(self._embed(default, query.query))
        try:
            async with self.db.tenant(tenant_id) as session:
                collections = await self._collections(session, query.collection_ids)
            # Vectors of different models are not comparable: one search per embedding model,
            # per weighting when knowledge bases weigh their lists differently, and per
            # language (a query is parsed in the language of the chunks it is matched with).
            groups: dict[tuple[str, int, Weights | None, str], list[uuid.UUID]] = defaultdict(list)
            for collection in collections:
                hybrid = query.mode is SearchMode.HYBRID
                weights = (query.weights or weights_of(collection)) if hybrid else None
                key = (collection.embedding_model, collection.embedding_dim, weights)
                groups[(*key, collection.language)].append(collection.id)
            reranked = self._reranks(query, collections)
            # A reranked search fuses more passages than it returns, for the reranker to order.
            fused = max(query.limit, self.rerank_candidates) if reranked else query.limit
            variants = {(weights, language) for _, _, weights, language in groups}
            if len(variants) > MAX_VARIANTS:
                # Each is a search of its own: a bound, or a tenant's knowledge bases could
                # multiply every search's queries a hundredfold.
                raise InvalidInput(
                    f"The knowledge bases searched weigh hybrid search or parse keywords "
                    f"{len(variants)} different ways (weights, language); one search takes at "
                    f"most {MAX_VARIANTS}. Search fewer knowledge bases at once "
                    "(collection_ids), give them the same weights and language, or pass "
                    "weights with the request."
                )
            hits: list[Hit] = []
            for (model, dim, weights, language), ids in groups.items():
                vector: Awaitable[Vector] | None
                if query.mode is SearchMode.KEYWORD:
                    vector = None
                elif model in vectors:
                    vector = _ready(vectors[model])
                elif model == default and early is not None:
                    vector = early
                else:
                    if model not in embedding:  # once per model, whatever its groups
                        embedding[model] = asyncio.create_task(self._embed(model, query.query))
                    vector = embedding[model]
                fusion = DEFAULT_FUSION.weighted(weights)
                scope = CandidateScope(
                    ids, query.document_ids, query.metadata or None, _candidates(query)
                )
                hits += await self._search_group(
                    tenant_id, query, dim, scope, language, vector, fusion, fused
                )
        finally:
            pending = [*embedding.values(), *([early] if early is not None else [])]
            for task in pending:
                task.cancel()  # a no-op once it has finished
            await asyncio.gather(*pending, return_exceptions=True)
        hits.sort(key=lambda h: (-h.score, h.chunk_id))
        if reranked:
            hits = await self._rerank(principal, query.query, hits[:fused])
        return hits[: query.limit]

    def _reranks(self, query: SearchQuery, collections: list[Collection]) -> bool:
        """Whether this search is reranked; an error if it should be and cannot."""
        wanted = query.rerank if query.rerank is not None else any(c.rerank for c in collections)
        if wanted and self.reranker is None:
            raise ServiceUnavailable(
                "This search asks for reranking (or a knowledge base searched turns it on), but "
                'no reranker is configured on this platform: search with "rerank": false, '
                "turn reranking off for the knowledge base, or ask the operator to set "
                "MTAI_RERANK_PROVIDER.",
                code="reranker_unavailable",
            )
        return wanted

    async def _rerank(self, principal: Principal, query: str, hits: list[Hit]) -> list[Hit]:
        """`hits` in the reranker's order, each scored by it; metered like an embedding."""
        reranker = self.reranker
        if reranker is None or not hits:
            return hits
        documents = [passage_text(h) for h in hits]
        tokens = sum(map(reranker.count_tokens, [query, *documents]))
        provider = provider_of(reranker.name)
        if self.meter is None:
            order = await reranker.arerank(query, documents)
        else:
            async with self.meter.embedding(
                principal, model=reranker.name, provider=provider, tokens=tokens, api="rag_rerank"
            ):
                order = await reranker.arerank(query, documents)
        return [replace(hits[r.index], score=r.score, rerank_score=r.score) for r in order]

    async def _embed(self, model: str, text: str) -> Vector:
        embedder = self.embedders.get(model)
        row: Vector = (await embedder.aembed([embedder.query_prefix + text]))[0]
        return row

    async def _search_group(
        self,
        tenant_id: uuid.UUID,
        query: SearchQuery,
        dim: int,
        scope: CandidateScope,
        language: str,
        vector: Awaitable[Vector] | None,
        fusion: Fusion,
        fused: int,
    ) -> list[Hit]:
        """Search knowledge bases of one embedding model, weighting and language; the best
        `fused` hits. In hybrid mode the keyword part runs on a connection of its own while
        the query is embedded and the vector part runs, so the search takes about as long as
        the slower part, not the sum of both. No connection is held while the query is
        embedded (a remote embedder may take a while)."""
        wants_keyword = query.mode is not SearchMode.VECTOR
        apart = None
        if vector is not None and wants_keyword and self.spare.take():
            apart = asyncio.create_task(
                self._keyword_candidates(tenant_id, query.query, scope, language)
            )
        try:
            query_vector = await vector if vector is not None else None
            async with self.db.tenant(tenant_id) as session:
                vector_found = None
                if query_vector is not None:
                    vector_found = await chunks_repo.vector_candidates(
                        session, dim=dim, query_vector=query_vector, **scope.filters()
                    )
                keyword_found = None
                if apart is not None:
                    keyword_found = await apart
                elif wants_keyword:
                    keyword_found = await self._keywords(session, query.query, scope, language)
                ranked = rank(vector_found, keyword_found, fused, fusion)
                found = await chunks_repo.passages(session, [r.chunk_id for r in ranked])
        finally:
            if apart is not None:
                apart.cancel()  # a no-op once it has finished
                await asyncio.gather(apart, return_exceptions=True)
                self.spare.give_back()
        # A chunk deleted between the two statements is left out rather than failing the search.
        return [Hit.of(found[r.chunk_id], r) for r in ranked if r.chunk_id in found]

    async def _keyword_candidates(
        self, tenant_id: uuid.UUID, query: str, scope: CandidateScope, language: str
    ) -> list[Candidate]:
        async with self.db.tenant(tenant_id) as session:
            return await self._keywords(session, query, scope, language)

    async def _keywords(
        self, session: AsyncSession, query: str, scope: CandidateScope, language: str
    ) -> list[Candidate]:
        return await chunks_repo.keyword_candidates(
            session, query_text=query, bm25=self.bm25, language=language, **scope.filters()
        )

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
        """Retrieve for the newest user message and put the sources in front of it (an agent's
        turn may end with tool results after it). Not metered on its own: the chat request that
        grounds is admitted (and recorded) as a whole."""
        at = next(
            (i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"),
            len(messages) - 1,
        )
        question = messages[at]
        hits = await self._search(
            principal,
            SearchQuery(
                query=question.content[:MAX_QUERY_CHARS],
                limit=top_k,
                collection_ids=collection_ids,
            ),
        )
        grounded = [*messages[:at], grounding(hits), *messages[at:]]
        return Grounded(grounded, sources(hits), citations(hits))


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
