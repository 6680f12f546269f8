"""A reranker's answer must score each document given exactly once: one that skips or repeats
a document is malformed, not a silent partial order."""

import pytest

from mtai.providers.rerank.base import Relevance, ordered


def test_ordered_sorts_most_relevant_first_ties_by_index() -> None:
    found = [Relevance(0, 0.1), Relevance(2, 0.9), Relevance(1, 0.9)]
    assert [r.index for r in ordered(found, 3, "r")] == [1, 2, 0]


@pytest.mark.parametrize(
    "indexes", [[0, 1], [0, 1, 1], [0, 1, 3], [-1, 0, 1], [0, 1, 2, 3]], ids=str
)
def test_ordered_refuses_a_skipped_repeated_or_foreign_index(indexes: list[int]) -> None:
    with pytest.raises(ValueError, match="scored documents"):
        ordered([Relevance(i, 0.5) for i in indexes], 3, "r")
