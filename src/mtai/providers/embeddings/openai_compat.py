"""Embeddings from an OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, Ollama, ...)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import httpx
import numpy as np
import numpy.typing as npt

from mtai.providers.embeddings.base import (
    EmbeddingError,
    failure,
    http_advice,
    normalise,
    with_retries,
)
from mtai.providers.llm.base import UpstreamError
from mtai.providers.llm.http import malformed, raise_for_status, transport_errors
from mtai.services import tokenizer

Array = npt.NDArray[np.float32]


def public_url(url: str) -> str:
    """`url` fit for an error message: credentials and query string dropped."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


class OpenAIEmbedder:
    """text-embedding-3-* and any model served behind the OpenAI embeddings wire format.

    `dimension` is not sent as the `dimensions` parameter (many compatible servers reject it);
    it is what the model is expected to return, and a different length is an error, since
    vectors of another size cannot share a knowledge base's index.
    """

    max_tokens = 8191  # OpenAI's per-input limit for its embedding models
    batch_size = 128

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        dimension: int,
        *,
        timeout: float = 30.0,
        retries: int = 2,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        self.name = f"openai/{model}"
        # OpenAI's models take none; an E5 or BGE model behind a compatible server does.
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.model = model
        self.dimension = dimension
        self.base_url = base_url.rstrip("/")
        self._where = public_url(self.base_url)
        self._api_key = api_key
        self._retries = retries
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )

    def count_tokens(self, text: str) -> int:
        """Exact for OpenAI's embedding models, which use cl100k; an estimate for others."""
        return tokenizer.count(text)

    async def aembed(self, texts: Sequence[str]) -> Array:
        texts = list(texts)
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        # One batch after another: the upstream's rate limit, not our concurrency, is the bound.
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            result[start : start + len(batch)] = await with_retries(
                functools.partial(self._post, batch), retries=self._retries, describe=self._describe
            )
        return normalise(result)

    async def _post(self, batch: list[str]) -> Array:
        with transport_errors():
            response = await self._client.post(
                f"{self.base_url}/embeddings",
                json={"model": self.model, "input": batch, "encoding_format": "float"},
            )
            await raise_for_status(response)
        try:
            data = response.json()["data"]
            if not isinstance(data, list) or len(data) != len(batch):
                raise ValueError(f"expected {len(batch)} embeddings")
            rows = np.empty((len(batch), self.dimension), dtype=np.float32)
            seen: set[int] = set()
            for item in data:
                index, vector = item["index"], item["embedding"]
                if not isinstance(index, int) or not 0 <= index < len(batch) or index in seen:
                    raise ValueError(f"bad index {index!r}")
                if not isinstance(vector, list):
                    raise TypeError("embedding is not a list of floats")
                if len(vector) != self.dimension:
                    raise EmbeddingError(
                        f"{self.name} returned {len(vector)}-dimensional vectors, not "
                        f"{self.dimension}: set MTAI_EMBEDDING_OPENAI_DIMENSION to the model's "
                        "size."
                    )
                rows[index] = vector  # the upstream may answer out of order
                seen.add(index)
        except (ValueError, KeyError, TypeError) as exc:
            raise malformed(self.name, exc) from exc
        return rows

    def _describe(self, exc: UpstreamError, attempts: int) -> EmbeddingError:
        advice = http_advice(
            exc.status,
            settings="MTAI_EMBEDDING_OPENAI_",
            url_hint="usually ending in /v1",
            model=self.model,
        )
        doing = f"Embedding with {self.name} at {self._where}"
        return EmbeddingError(failure(doing, exc, attempts, advice, self._api_key))

    async def aclose(self) -> None:
        await self._client.aclose()
