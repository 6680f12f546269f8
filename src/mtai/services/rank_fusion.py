"""Ordering search candidates: one list as it is, or two fused by reciprocal rank fusion."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from mtai.db.repositories.chunks import Candidate

# Reciprocal rank fusion's damping constant. Cormack et al. (2009) use 60; on the shipped
# evaluation set 10 ranked better on every metric (docs/rag.md has both measurements).
RRF_K = 10


@dataclass(frozen=True)
class Ranked:
    chunk_id: uuid.UUID
    score: float
    vector_rank: int | None
    keyword_rank: int | None


def rank(
    vector: Sequence[Candidate] | None, keyword: Sequence[Candidate] | None, limit: int
) -> list[Ranked]:
    """The best `limit` chunks. Each list comes best first; a missing list is a mode not asked
    for. One list keeps its own scores; two are fused: score = sum of 1 / (RRF_K + rank)."""
    vector_ranks = {c.chunk_id: n for n, c in enumerate(vector or (), start=1)}
    keyword_ranks = {c.chunk_id: n for n, c in enumerate(keyword or (), start=1)}
    if vector is not None and keyword is not None:
        scores = {
            chunk: sum(
                1.0 / (RRF_K + r[chunk]) for r in (vector_ranks, keyword_ranks) if chunk in r
            )
            for chunk in vector_ranks.keys() | keyword_ranks.keys()
        }
    else:
        scores = {c.chunk_id: c.score for c in (vector or keyword or ())}
    best = sorted(scores, key=lambda chunk: (-scores[chunk], chunk))[:limit]
    return [
        Ranked(chunk, scores[chunk], vector_ranks.get(chunk), keyword_ranks.get(chunk))
        for chunk in best
    ]
