"""Embeddings for the OpenAI-compatible /v1/embeddings (and, next, for retrieval)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mtai.errors import Forbidden, InvalidInput, NotFound
from mtai.providers.embeddings.minilm import MiniLMEmbedder
from mtai.services.metering import Meter, provider_of
from mtai.services.principal import Principal, Scope

MAX_INPUTS = 256
MAX_INPUT_CHARS = 20_000


@dataclass(frozen=True)
class EmbeddingResult:
    model: str
    vectors: NDArray[np.float32]
    tokens: int


class EmbeddingService:
    def __init__(self, embedder: MiniLMEmbedder, meter: Meter) -> None:
        self.embedder = embedder
        self.meter = meter

    @property
    def models(self) -> list[str]:
        return [self.embedder.name]

    async def embed(self, principal: Principal, model: str, texts: list[str]) -> EmbeddingResult:
        """Admitted by the caller's limits and budgets before anything is embedded, and
        recorded in the usage ledger with its tokens (and cost, if the embedder is priced)."""
        if not (Scope.CHAT in principal.scopes or Scope.RAG_READ in principal.scopes):
            raise Forbidden(
                "This credential lacks the 'chat' or 'rag:read' scope.", code="insufficient_scope"
            )
        if model not in self.models:
            raise NotFound(
                f"Embedding model '{model}' does not exist; available: {', '.join(self.models)}.",
                code="model_not_found",
            )
        if not texts or len(texts) > MAX_INPUTS:
            raise InvalidInput(f"Send between 1 and {MAX_INPUTS} inputs.")
        for index, text in enumerate(texts):
            if not text.strip():
                raise InvalidInput(f"input[{index}] is empty.")
            if len(text) > MAX_INPUT_CHARS:
                raise InvalidInput(f"input[{index}] is longer than {MAX_INPUT_CHARS} characters.")
        tokens = sum(min(self.embedder.count_tokens(t), self.embedder.max_tokens) for t in texts)
        async with self.meter.embedding(
            principal,
            model=self.embedder.name,
            provider=provider_of(self.embedder.name),
            tokens=tokens,
            api="embeddings",
        ):
            vectors = await self.embedder.aembed(texts)
        return EmbeddingResult(self.embedder.name, vectors, tokens)
