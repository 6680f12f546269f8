"""The numpy all-MiniLM-L6-v2 against embeddings made by sentence-transformers (torch, CPU).

The fixture was computed once in a scratch environment with sentence-transformers 6.2 and torch,
which the project does not depend on; it covers short, long (truncated), unicode and code texts.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtai.providers.embeddings.minilm import MiniLMEmbedder

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def reference_matrix(reference: dict[str, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array(reference["embeddings"], dtype=np.float64)


def test_matches_sentence_transformers(embedder: MiniLMEmbedder, reference: dict[str, Any]) -> None:
    texts: list[str] = reference["texts"]
    expected = reference_matrix(reference)
    actual = embedder.embed(texts)
    assert actual.shape == (len(texts), 384)
    assert actual.dtype == np.float32
    cosine = (actual * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)
    for text, value in zip(texts, cosine, strict=True):
        assert value >= 0.9999, f"cosine {value:.6f} for {text[:40]!r}"


def test_long_texts_are_truncated_to_the_model_window(
    embedder: MiniLMEmbedder, reference: dict[str, Any]
) -> None:
    # The fixture must exercise truncation for the comparison above to cover it.
    counts = [embedder.count_tokens(text) for text in reference["texts"]]
    assert counts == reference["token_counts"]
    assert max(counts) > embedder.max_tokens


def test_rows_are_unit_length(embedder: MiniLMEmbedder, reference: dict[str, Any]) -> None:
    norms = np.linalg.norm(embedder.embed(reference["texts"]), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_order_is_preserved_across_length_sorted_batches(reference: dict[str, Any]) -> None:
    texts: list[str] = reference["texts"]
    order = [int(i) for i in np.random.default_rng(7).permutation(len(texts))]
    # A small batch size makes the length sort move texts between several batches.
    actual = MiniLMEmbedder(batch_size=3).embed([texts[i] for i in order])
    expected = reference_matrix(reference)[order]
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_batch_size_does_not_change_results(reference: dict[str, Any]) -> None:
    one = MiniLMEmbedder(batch_size=1).embed(reference["texts"])
    many = MiniLMEmbedder(batch_size=32).embed(reference["texts"])
    assert np.abs(one - many).max() < 1e-5


async def test_aembed_equals_embed(embedder: MiniLMEmbedder, reference: dict[str, Any]) -> None:
    texts: list[str] = reference["texts"]
    np.testing.assert_allclose(await embedder.aembed(texts), embedder.embed(texts), atol=1e-6)


async def test_empty_input(embedder: MiniLMEmbedder) -> None:
    for result in (embedder.embed([]), await embedder.aembed([])):
        assert result.shape == (0, 384)
        assert result.dtype == np.float32


def test_concurrent_first_use_agrees(reference: dict[str, Any]) -> None:
    shared = MiniLMEmbedder()
    texts: list[str] = reference["texts"][:4]
    results: list[np.ndarray[Any, np.dtype[np.float32]]] = []
    lock = threading.Lock()

    def work() -> None:
        result = shared.embed(texts)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], atol=1e-6)
