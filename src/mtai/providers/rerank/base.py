"""What every reranker offers, and the error its upstream failures become."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mtai.errors import AppError


@dataclass(frozen=True)
class Relevance:
    """One document's score: `index` into the documents given, higher `score` more relevant."""

    index: int
    score: float


@runtime_checkable
class Reranker(Protocol):
    """A model that orders documents by relevance to a query.

    `name` is what the API and the usage ledger call it ("cohere/rerank-v3.5", ...).
    """

    name: str
    max_documents: int  # documents per call the upstream accepts

    async def arerank(self, query: str, documents: Sequence[str]) -> list[Relevance]:
        """Every document's relevance, most relevant first."""
        ...

    def count_tokens(self, text: str) -> int: ...

    async def aclose(self) -> None: ...


class RerankError(AppError):
    """A reranking upstream failed; the message says what to check and holds no secret."""

    status_code = 502
    code = "rerank_failed"


def ordered(found: list[Relevance], documents: int, name: str) -> list[Relevance]:
    """`found` checked (each index once, in range) and sorted, most relevant first."""
    indexes = [r.index for r in found]
    if sorted(indexes) != list(range(documents)):
        raise ValueError(f"{name} scored documents {sorted(indexes)[:10]}, not 0..{documents - 1}")
    return sorted(found, key=lambda r: (-r.score, r.index))
