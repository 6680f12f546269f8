"""Ordering search candidates: one list as it is, or two fused with weights.

Two fusions (Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval", 2023):
weighted reciprocal rank fusion, score = w_v / (k + rank_v) + w_k / (k + rank_k), and a convex
combination of each list's min-max normalised scores, score = w_v * v' + w_k * k'. A chunk
missing from a list gets nothing from it. Weights are relative: (2, 1) is (1, 0.5).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from mtai.db.repositories.chunks import Candidate
from mtai.errors import InvalidInput

# Reciprocal rank fusion's damping constant. Cormack et al. (2009) use 60; on the tuning set
# (eval/datasets/python-docs) 10 ranked better on every metric (docs/rag.md has both).
RRF_K = 10
MAX_WEIGHT = 100.0  # weights are relative: a bound keeps them readable numbers


class FusionMethod(StrEnum):
    RRF = "rrf"
    CONVEX = "convex"


@dataclass(frozen=True)
class Fusion:
    vector: float = 1.0
    keyword: float = 1.0
    method: FusionMethod = FusionMethod.RRF
    k: int = RRF_K

    def weighted(self, weights: Weights | None) -> Fusion:
        """This fusion with `weights` (None: as it is)."""
        if weights is None:
            return self
        return replace(self, vector=weights.vector, keyword=weights.keyword)

    def label(self) -> str:
        return f"{self.method.value} {self.vector:g}:{self.keyword:g}"


@dataclass(frozen=True)
class Weights:
    """A knowledge base's or a request's weights for the vector and the keyword list."""

    vector: float
    keyword: float

    def __post_init__(self) -> None:
        if not valid_weights(self.vector, self.keyword):
            raise InvalidInput(
                "Weights are numbers from 0 to 100, not both 0 (e.g. vector 0.6, keyword 0.4)."
            )


# Hybrid search's fusion unless a request says otherwise. Convex, as Bruch et al. recommend;
# the weight chosen on the tuning set (python-docs) by the one-standard-error rule: the most
# balanced weight within one standard error of the best (0.65). docs/rag.md has every set.
DEFAULT_FUSION = Fusion(0.6, 0.4, FusionMethod.CONVEX)


def valid_weights(vector: float, keyword: float) -> bool:
    return all(math.isfinite(w) and 0 <= w <= MAX_WEIGHT for w in (vector, keyword)) and (
        vector + keyword > 0
    )


def parse_fusion(text: str) -> Fusion:
    """`METHOD:VECTOR_WEIGHT:KEYWORD_WEIGHT`, e.g. `rrf:1:0.5`."""
    parts = text.split(":")
    try:
        method, vector, keyword = FusionMethod(parts[0]), float(parts[1]), float(parts[2])
    except (ValueError, IndexError):
        raise ValueError(
            f"{text!r} is not METHOD:VECTOR_WEIGHT:KEYWORD_WEIGHT with METHOD rrf or convex "
            "(e.g. rrf:1:0.5)."
        ) from None
    if len(parts) != 3 or not valid_weights(vector, keyword):
        raise ValueError(f"{text!r}: weights are finite numbers >= 0, not both 0.")
    return Fusion(vector, keyword, method)


@dataclass(frozen=True)
class Ranked:
    chunk_id: uuid.UUID
    score: float
    vector_rank: int | None
    keyword_rank: int | None
    # What the inspector shows: each list's own score, and the fusion that combined them
    # (None when one list was searched alone).
    vector_score: float | None = None
    keyword_score: float | None = None
    fusion: Fusion | None = None


def _reciprocal(candidates: Sequence[Candidate], weight: float, k: int) -> dict[uuid.UUID, float]:
    return {c.chunk_id: weight / (k + n) for n, c in enumerate(candidates, start=1)}


def _normalised(candidates: Sequence[Candidate], weight: float) -> dict[uuid.UUID, float]:
    if not candidates:
        return {}
    low, high = min(c.score for c in candidates), max(c.score for c in candidates)
    span = high - low
    return {c.chunk_id: weight * ((c.score - low) / span if span > 0 else 1.0) for c in candidates}


def fuse(
    vector: Sequence[Candidate], keyword: Sequence[Candidate], fusion: Fusion
) -> dict[uuid.UUID, float]:
    """Every candidate's fused score (each list best first)."""
    if fusion.method is FusionMethod.RRF:
        parts = (
            _reciprocal(vector, fusion.vector, fusion.k),
            _reciprocal(keyword, fusion.keyword, fusion.k),
        )
    else:
        parts = (_normalised(vector, fusion.vector), _normalised(keyword, fusion.keyword))
    scores = dict(parts[0])
    for chunk, score in parts[1].items():
        scores[chunk] = scores.get(chunk, 0.0) + score
    return scores


def rank(
    vector: Sequence[Candidate] | None,
    keyword: Sequence[Candidate] | None,
    limit: int,
    fusion: Fusion = DEFAULT_FUSION,
) -> list[Ranked]:
    """The best `limit` chunks. Each list comes best first; a missing list is a mode not asked
    for. One list keeps its own scores; two are fused as `fusion` says."""
    vector_ranks = {c.chunk_id: n for n, c in enumerate(vector or (), start=1)}
    keyword_ranks = {c.chunk_id: n for n, c in enumerate(keyword or (), start=1)}
    vector_scores = {c.chunk_id: c.score for c in vector or ()}
    keyword_scores = {c.chunk_id: c.score for c in keyword or ()}
    used: Fusion | None = None
    if vector is not None and keyword is not None:
        scores, used = fuse(vector, keyword, fusion), fusion
    else:
        scores = vector_scores or keyword_scores
    best = sorted(scores, key=lambda chunk: (-scores[chunk], chunk))[:limit]
    return [
        Ranked(
            chunk,
            scores[chunk],
            vector_ranks.get(chunk),
            keyword_ranks.get(chunk),
            vector_scores.get(chunk),
            keyword_scores.get(chunk),
            used,
        )
        for chunk in best
    ]
