"""Ordering search candidates: one list kept as it is, two fused by reciprocal rank fusion."""

from __future__ import annotations

import uuid

import pytest

from mtai.db.repositories.chunks import Candidate
from mtai.services.rank_fusion import RRF_K, Fusion, FusionMethod, fuse, parse_fusion, rank

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
    ranked = {r.chunk_id: r for r in rank(vector, keyword, 10, Fusion())}
    assert ranked[B].score == 1 / (RRF_K + 2) + 1 / (RRF_K + 3)
    assert (ranked[B].vector_rank, ranked[B].keyword_rank) == (2, 3)
    assert ranked[A].score == 1 / (RRF_K + 1)
    assert (ranked[D].vector_rank, ranked[D].keyword_rank) == (None, 2)
    # In both lists beats first in one: B (2nd and 3rd) and C (3rd and 1st) lead.
    assert [r.chunk_id for r in rank(vector, keyword, 10, Fusion())] == [C, B, A, D]


def test_equal_scores_order_by_chunk_id_and_limit_cuts() -> None:
    # A and C each lead one list: the same fused score, so the smaller id comes first.
    vector = [Candidate(C, 0.5)]
    keyword = [Candidate(A, 3.0)]
    assert [r.chunk_id for r in rank(vector, keyword, 10, Fusion())] == [A, C]
    assert [r.chunk_id for r in rank(vector, keyword, 1, Fusion())] == [A]
    assert rank([], [], 5) == []
    assert rank(None, [], 5) == []


def test_weights_tilt_reciprocal_rank_fusion() -> None:
    vector = [Candidate(A, 0.9), Candidate(B, 0.8)]
    keyword = [Candidate(B, 5.0), Candidate(C, 4.0)]
    leaning = Fusion(vector=1.0, keyword=0.25)
    ranked = {r.chunk_id: r.score for r in rank(vector, keyword, 10, leaning)}
    assert ranked[A] == 1 / (RRF_K + 1)
    assert ranked[B] == 1 / (RRF_K + 2) + 0.25 / (RRF_K + 1)
    assert ranked[C] == 0.25 / (RRF_K + 2)
    # Keyword weight 0: its list only adds candidates that rank last; the vector order stands.
    assert [r.chunk_id for r in rank(vector, keyword, 10, Fusion(1.0, 0.0))][:2] == [A, B]


def test_convex_fusion_adds_min_max_normalised_scores() -> None:
    vector = [Candidate(A, 0.9), Candidate(B, 0.7), Candidate(C, 0.5)]
    keyword = [Candidate(C, 8.0), Candidate(D, 2.0)]
    scores = fuse(vector, keyword, Fusion(0.6, 0.4, FusionMethod.CONVEX))
    assert scores[A] == pytest.approx(0.6)
    assert scores[B] == pytest.approx(0.6 * 0.5)
    assert scores[C] == pytest.approx(0.4)  # last of the vector list (0), first of keyword
    assert scores[D] == pytest.approx(0.0)
    # One candidate in a list (no spread): it counts fully.
    assert fuse([Candidate(A, 0.3)], [], Fusion(0.5, 0.5, FusionMethod.CONVEX)) == {A: 0.5}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rrf:1:0.5", Fusion(1.0, 0.5)),
        ("convex:0.7:0.3", Fusion(0.7, 0.3, FusionMethod.CONVEX)),
    ],
)
def test_parse_fusion(text: str, expected: Fusion) -> None:
    assert parse_fusion(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "rrf",
        "rrf:1",
        "bm25:1:1",
        "rrf:a:1",
        "rrf:-1:1",
        "rrf:0:0",
        "rrf:1:1:1",
        "rrf:nan:1",
        "rrf:inf:1",
    ],
)
def test_parse_fusion_refuses_what_it_cannot_use(text: str) -> None:
    with pytest.raises(ValueError, match=r"METHOD|weights"):
        parse_fusion(text)
