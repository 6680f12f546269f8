"""The ONNX Runtime all-MiniLM-L6-v2 against sentence-transformers and the numpy embedder.

Same bar as test_minilm.py against the sentence-transformers fixture; against the numpy
embedder, a stricter one over a few hundred generated texts, from a single character to far past
the 256-token window. onnxruntime is a dependency (this is the embedder the platform runs), so
the test is never skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtai.providers.embeddings.base import Embedder
from mtai.providers.embeddings.minilm import MiniLMEmbedder
from mtai.providers.embeddings.minilm_onnx import OnnxMiniLMEmbedder

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"

Matrix = np.ndarray[Any, np.dtype[np.float32]]

# Both implementations compute in float32; they differ by rounding only (~1e-7 per component).
NUMPY_AGREEMENT = 0.99999


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def onnx_embedder() -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder()


@pytest.fixture(scope="module")
def numpy_embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture(scope="module")
def varied_texts(reference: dict[str, Any]) -> list[str]:
    """~300 texts: the fixture's, tiny ones, and runs of 1 to 600 of the fixture's words.

    The fixture mixes prose, code, SQL, URLs, numbers, accents, CJK, Cyrillic, Arabic,
    Devanagari and emoji; shuffled, its words make text the tokenizer splits in every way.
    """
    rng = np.random.default_rng(20240315)
    texts: list[str] = list(reference["texts"])
    words = sorted(set(" ".join(texts).split()))
    texts += ["", " ", "a", "?", "🚀", "東", "x y", "OK.", "\n\t", "##", "[CLS]", "[PAD] [SEP]"]
    for length in rng.integers(1, 40, size=150):
        texts.append(" ".join(rng.choice(words, size=int(length))))
    for length in rng.integers(40, 600, size=130):
        separator = "\n" if rng.random() < 0.3 else " "
        texts.append(separator.join(rng.choice(words, size=int(length))))
    return texts


def cosines(a: Matrix, b: Matrix) -> np.ndarray[Any, np.dtype[np.float64]]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.asarray(
        (a64 * b64).sum(axis=1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    )


def test_is_an_embedder_named_like_the_numpy_one(onnx_embedder: OnnxMiniLMEmbedder) -> None:
    assert isinstance(onnx_embedder, Embedder)
    assert (onnx_embedder.name, onnx_embedder.dimension, onnx_embedder.max_tokens) == (
        MiniLMEmbedder.name,
        MiniLMEmbedder.dimension,
        MiniLMEmbedder.max_tokens,
    )
    assert onnx_embedder.batch_size == 32
    assert onnx_embedder.threads >= 1


def test_matches_sentence_transformers(
    onnx_embedder: OnnxMiniLMEmbedder, reference: dict[str, Any]
) -> None:
    texts: list[str] = reference["texts"]
    expected = np.array(reference["embeddings"], dtype=np.float32)
    actual = onnx_embedder.embed(texts)
    assert actual.shape == (len(texts), 384)
    assert actual.dtype == np.float32
    for text, value in zip(texts, cosines(actual, expected), strict=True):
        assert value >= 0.9999, f"cosine {value:.6f} for {text[:40]!r}"


def test_agrees_with_the_numpy_embedder(
    onnx_embedder: OnnxMiniLMEmbedder, numpy_embedder: MiniLMEmbedder, varied_texts: list[str]
) -> None:
    counts = [onnx_embedder.count_tokens(text) for text in varied_texts]
    # The texts must span the whole window, truncation included, for the comparison to cover it.
    assert min(counts) == 2
    assert sum(count > onnx_embedder.max_tokens for count in counts) >= 50
    actual = onnx_embedder.embed(varied_texts)
    expected = numpy_embedder.embed(varied_texts)
    for text, value in zip(varied_texts, cosines(actual, expected), strict=True):
        assert value >= NUMPY_AGREEMENT, f"cosine {value:.7f} for {text[:40]!r}"
    assert np.abs(actual - expected).max() < 1e-5


def test_rows_are_unit_length(onnx_embedder: OnnxMiniLMEmbedder, varied_texts: list[str]) -> None:
    norms = np.linalg.norm(onnx_embedder.embed(varied_texts), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_a_text_embeds_the_same_alone_and_padded_among_longer_ones(
    onnx_embedder: OnnxMiniLMEmbedder, varied_texts: list[str]
) -> None:
    short = ["a", "What is the capital of France?", "🚀", "def f(): return None"]
    longest = sorted(varied_texts, key=onnx_embedder.count_tokens)[-8:]
    alone = np.concatenate([onnx_embedder.embed([text]) for text in short])
    # One batch: each short text is padded to the 256 tokens of the longest.
    mixed = onnx_embedder.embed([*longest, *short])[len(longest) :]
    assert cosines(alone, mixed).min() >= NUMPY_AGREEMENT
    np.testing.assert_allclose(alone, mixed, atol=1e-5)


def test_order_and_batch_size_do_not_change_results(
    onnx_embedder: OnnxMiniLMEmbedder, varied_texts: list[str]
) -> None:
    texts = varied_texts[:60]
    order = [int(i) for i in np.random.default_rng(7).permutation(len(texts))]
    expected = onnx_embedder.embed(texts)
    # A small batch size makes the length sort move texts between several batches.
    actual = OnnxMiniLMEmbedder(batch_size=3, threads=1).embed([texts[i] for i in order])
    np.testing.assert_allclose(actual, expected[order], atol=1e-5)


def test_counts_tokens_like_the_numpy_embedder(
    onnx_embedder: OnnxMiniLMEmbedder, reference: dict[str, Any]
) -> None:
    counts = [onnx_embedder.count_tokens(text) for text in reference["texts"]]
    assert counts == reference["token_counts"]


async def test_aembed_equals_embed(
    onnx_embedder: OnnxMiniLMEmbedder, reference: dict[str, Any]
) -> None:
    texts: list[str] = reference["texts"]
    np.testing.assert_allclose(
        await onnx_embedder.aembed(texts), onnx_embedder.embed(texts), atol=1e-6
    )
    await onnx_embedder.aclose()


async def test_empty_input(onnx_embedder: OnnxMiniLMEmbedder) -> None:
    for result in (onnx_embedder.embed([]), await onnx_embedder.aembed([])):
        assert result.shape == (0, 384)
        assert result.dtype == np.float32


def test_concurrent_first_use_agrees(reference: dict[str, Any]) -> None:
    shared = OnnxMiniLMEmbedder()
    texts: list[str] = reference["texts"][:4]
    results: list[Matrix] = []
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


def test_rejects_a_thread_count_below_one() -> None:
    with pytest.raises(ValueError, match="threads"):
        OnnxMiniLMEmbedder(threads=0)


MEMORY_PROBE = """
from mtai.providers.embeddings.minilm_onnx import OnnxMiniLMEmbedder

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024

embedder = OnnxMiniLMEmbedder()
embedder.embed(["warm up"])
before = rss_mib()
embedder.embed(["word " * 300] * 64)
print(rss_mib() - before)
"""


def test_a_large_batch_does_not_keep_its_memory() -> None:
    # Without arena shrinkage, ONNX Runtime kept about 300 MiB after this batch, for good.
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, check=True
    )
    grown = int(result.stdout.strip().splitlines()[-1])
    assert grown < 120, f"RSS grew {grown} MiB after one large batch"
