"""Ordering search candidates: one list kept as it is, two fused by reciprocal rank fusion."""

from __future__ import annotations

import uuid

from mtai.db.repositories.chunks import Candidate
from mtai.services.rank_fusion import RRF_K, rank

A, B, C, D = (uuid.UUID(int=n) for n in (1, 2, 3, 4))


def test_one_list_keeps_its_order_scores_and_ranks() -> None:
    vector = [Candidate(C, 0.9), Candidate(A, 0.8), Candidate(B, 0.7)]
    ranked = rank(vector, None, 2)
    assert [(r.chunk_id, r.score, r.vector_rank, r.keyword_rank) for r in ranked] == [
        (C, 0.9, 1, None),
        (A, 0.8, 2, None),
    ]
    keyword = [Candidate(B, 0.5), Candidate(D, 0.1)]
    assert [(r.chunk_id, r.keyword_rank, r.vector_rank) for r in rank(None, keyword, 10)] == [
        (B, 1, None),
        (D, 2, None),
    ]


def test_two_lists_fuse_by_reciprocal_rank() -> None:
    vector = [Candidate(A, 0.99), Candidate(B, 0.98), Candidate(C, 0.10)]
    keyword = [Candidate(C, 7.0), Candidate(D, 6.0), Candidate(B, 0.01)]
    ranked = {r.chunk_id: r for r in rank(vector, keyword, 10)}
    assert ranked[B].score == 1 / (RRF_K + 2) + 1 / (RRF_K + 3)
    assert (ranked[B].vector_rank, ranked[B].keyword_rank) == (2, 3)
    assert ranked[A].score == 1 / (RRF_K + 1)
    assert (ranked[D].vector_rank, ranked[D].keyword_rank) == (None, 2)
    # In both lists beats first in one: B (2nd and 3rd) and C (3rd and 1st) lead.
    assert [r.chunk_id for r in rank(vector, keyword, 10)] == [C, B, A, D]


def test_equal_scores_order_by_chunk_id_and_limit_cuts() -> None:
    # A and C each lead one list: the same fused score, so the smaller id comes first.
    vector = [Candidate(C, 0.5)]
    keyword = [Candidate(A, 3.0)]
    assert [r.chunk_id for r in rank(vector, keyword, 10)] == [A, C]
    assert [r.chunk_id for r in rank(vector, keyword, 1)] == [A]
    assert rank([], [], 5) == []
    assert rank(None, [], 5) == []
