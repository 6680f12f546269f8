"""Reranking through a Cohere-compatible ``/rerank`` endpoint (Cohere, Jina, vLLM, Infinity)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import httpx

from mtai.providers.embeddings.base import failure, http_advice, with_retries
from mtai.providers.embeddings.openai_compat import public_url
from mtai.providers.llm.base import UpstreamError
from mtai.providers.llm.http import malformed, raise_for_status, transport_errors
from mtai.providers.rerank.base import Relevance, RerankError, ordered
from mtai.services import tokenizer


class CohereReranker:
    """POST {base_url}/rerank with {model, query, documents, top_n}; the answer's `results`
    hold each document's `index` and `relevance_score` (Cohere's v1/v2 and Jina's shape)."""

    max_documents = 1000  # Cohere's per-request limit

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        timeout: float = 30.0,
        retries: int = 2,
    ) -> None:
        self.name = f"cohere/{model}"
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._where = public_url(self.base_url)
        self._api_key = api_key
        self._retries = retries
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )

    def count_tokens(self, text: str) -> int:
        """An estimate (cl100k): rerankers' own tokenizers differ, and Cohere bills searches."""
        return tokenizer.count(text)

    async def arerank(self, query: str, documents: Sequence[str]) -> list[Relevance]:
        documents = list(documents)
        if not documents:
            return []
        return await with_retries(
            functools.partial(self._post, query, documents),
            retries=self._retries,
            describe=self._describe,
        )

    async def _post(self, query: str, documents: list[str]) -> list[Relevance]:
        with transport_errors():
            response = await self._client.post(
                f"{self.base_url}/rerank",
                json={
                    "model": self.model,
                    "query": query,
                    "documents": documents,
                    "top_n": len(documents),
                },
            )
            await raise_for_status(response)
        try:
            found = []
            for item in response.json()["results"]:
                index, score = item["index"], float(item["relevance_score"])
                if not isinstance(index, int) or not math.isfinite(score):
                    raise ValueError(f"bad result {item!r}"[:200])
                found.append(Relevance(index, score))
            return ordered(found, len(documents), self.name)
        except (ValueError, KeyError, TypeError) as exc:
            raise malformed(self.name, exc) from exc

    def _describe(self, exc: UpstreamError, attempts: int) -> RerankError:
        advice = http_advice(
            exc.status,
            settings="MTAI_RERANK_",
            url_hint="the URL before /rerank, e.g. https://api.cohere.com/v2",
            model=self.model,
        )
        doing = f"Reranking with {self.name} at {self._where}"
        return RerankError(failure(doing, exc, attempts, advice, self._api_key))

    async def aclose(self) -> None:
        await self._client.aclose()
