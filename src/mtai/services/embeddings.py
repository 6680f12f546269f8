"""Embeddings for the OpenAI-compatible /v1/embeddings (and, next, for retrieval)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from mtai.context import request_id_var
from mtai.errors import Forbidden, InvalidInput, NotFound
from mtai.providers.embeddings.minilm import MiniLMEmbedder
from mtai.services.principal import Principal, Scope
from mtai.services.usage import UsageLedger, UsageRecord

MAX_INPUTS = 256
MAX_INPUT_CHARS = 20_000


@dataclass(frozen=True)
class EmbeddingResult:
    model: str
    vectors: NDArray[np.float32]
    tokens: int


class EmbeddingService:
    def __init__(self, embedder: MiniLMEmbedder, ledger: UsageLedger) -> None:
        self.embedder = embedder
        self.ledger = ledger

    @property
    def models(self) -> list[str]:
        return [self.embedder.name]

    async def embed(self, principal: Principal, model: str, texts: list[str]) -> EmbeddingResult:
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
        started = time.perf_counter()
        vectors = await self.embedder.aembed(texts)
        tokens = sum(min(self.embedder.count_tokens(t), self.embedder.max_tokens) for t in texts)
        self.ledger.record(
            UsageRecord.for_principal(
                principal,
                request_id=request_id_var.get() or uuid.uuid4().hex,
                model=self.embedder.name,
                provider="local",
                prompt_tokens=tokens,
                completion_tokens=0,
                cost_usd=Decimal(0),
                latency_ms=int((time.perf_counter() - started) * 1000),
                ttft_ms=None,
                status="ok",
                error_code=None,
                api="embeddings",
                created_at=datetime.now(UTC),
            )
        )
        return EmbeddingResult(self.embedder.name, vectors, tokens)
