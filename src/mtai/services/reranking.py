"""Reranking for the Cohere-compatible /v1/rerank: the platform's reranker, metered."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mtai.errors import Forbidden, InvalidInput, NotFound
from mtai.providers.rerank.base import Relevance, Reranker
from mtai.services.metering import Meter, provider_of
from mtai.services.principal import Principal, Scope

MAX_DOCUMENTS = 1000
MAX_DOCUMENT_CHARS = 20_000
MAX_QUERY_CHARS = 20_000


@dataclass(frozen=True)
class RerankResult:
    model: str
    results: list[Relevance]  # most relevant first, at most top_n
    tokens: int


class RerankService:
    def __init__(self, reranker: Reranker | None, meter: Meter) -> None:
        self.reranker = reranker
        self.meter = meter

    @property
    def models(self) -> list[str]:
        return [self.reranker.name] if self.reranker is not None else []

    async def rerank(
        self,
        principal: Principal,
        model: str,
        query: str,
        documents: list[str],
        top_n: int | None,
    ) -> RerankResult:
        """Admitted by the caller's limits and budgets before the reranker is called, and
        recorded in the usage ledger with the tokens of the query and the documents."""
        if not (Scope.CHAT in principal.scopes or Scope.RAG_READ in principal.scopes):
            raise Forbidden(
                "This credential lacks the 'chat' or 'rag:read' scope.", code="insufficient_scope"
            )
        reranker = self.reranker
        if reranker is None or model != reranker.name:
            available = ", ".join(self.models) or "none (the operator sets MTAI_RERANK_PROVIDER)"
            raise NotFound(
                f"Reranker model '{model}' does not exist; available: {available}.",
                code="model_not_found",
            )
        if not query.strip() or len(query) > MAX_QUERY_CHARS:
            raise InvalidInput(f"query must be 1 to {MAX_QUERY_CHARS} characters, not blank.")
        most = min(MAX_DOCUMENTS, reranker.max_documents)
        if not documents or len(documents) > most:
            raise InvalidInput(f"Send between 1 and {most} documents.")
        for index, text in enumerate(documents):
            if not text.strip():
                raise InvalidInput(f"documents[{index}] is empty.")
            if len(text) > MAX_DOCUMENT_CHARS:
                raise InvalidInput(
                    f"documents[{index}] is longer than {MAX_DOCUMENT_CHARS} characters."
                )
        # Tokenizing up to a request's 1 MiB is CPU work: off the event loop.
        tokens = await asyncio.to_thread(
            lambda: sum(map(reranker.count_tokens, [query, *documents]))
        )
        async with self.meter.embedding(
            principal,
            model=reranker.name,
            provider=provider_of(reranker.name),
            tokens=tokens,
            api="rerank",
        ):
            order = await reranker.arerank(query, documents)
        return RerankResult(reranker.name, order[:top_n] if top_n else order, tokens)
