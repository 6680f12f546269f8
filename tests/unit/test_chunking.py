"""Chunking invariants, with a whitespace token counter and with the real MiniLM tokenizer.

The one that matters most: no chunk's embedding text exceeds max_tokens, since the embedding
model silently drops whatever is beyond.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from collections.abc import Callable

import pytest

from mtai.providers.embeddings.minilm import MiniLMEmbedder
from mtai.rag.chunking import Chunk, chunk_document
from mtai.rag.parsing import Block, DocumentKind, ParsedDocument, parse

Counter = Callable[[str], int]

WORDS = [
    "tenant",
    "isolation",
    "keeps",
    "every",
    "organisation's",
    "documents",
    "apart",
    "while",
    "the",
    "retrieval",
    "layer",
    "ranks",
    "passages",
    "by",
    "cosine",
    "similarity",
    "and",
    "the",
    "gateway",
    "enforces",
    "quotas",
    "per",
    "key",
]


def whitespace_tokens(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def minilm() -> Counter:
    return MiniLMEmbedder().count_tokens


def sentence(seed: int) -> str:
    """A deterministic sentence of 4 to 23 words."""
    digest = hashlib.sha256(str(seed).encode()).digest()
    words = [WORDS[b % len(WORDS)] for b in digest[1 : 5 + digest[0] % 20]]
    return " ".join(words).capitalize() + "."


def paragraph(seed: int, sentences: int) -> str:
    return " ".join(sentence(seed * 100 + i) for i in range(sentences))


def document(*blocks: Block) -> ParsedDocument:
    return ParsedDocument(DocumentKind.TEXT, list(blocks), None)


def sectioned_document() -> ParsedDocument:
    """Three sections of uneven length, one of them with a long heading path."""
    return document(
        *(Block(paragraph(i, 1 + i % 7), ("Guide", "Install"), None) for i in range(12)),
        Block(paragraph(50, 2), ("Guide", "Limits"), None),
        *(Block(paragraph(60 + i, 5), ("Guide", "Limits", "Per tenant"), None) for i in range(9)),
        Block(paragraph(90, 40), (), None),
    )


def chunk(doc: ParsedDocument, count: Counter, max_tokens: int, overlap: int) -> list[Chunk]:
    return chunk_document(doc, count, max_tokens=max_tokens, overlap_tokens=overlap)


def words(text: str) -> list[str]:
    return text.split()


def assert_fits(chunks: list[Chunk], count: Counter, max_tokens: int) -> None:
    assert chunks
    for c in chunks:
        assert c.text.strip() == c.text
        assert c.text
        assert c.tokens == count(c.embedding_text)
        assert c.tokens <= max_tokens, (c.tokens, c.embedding_text[:80])


# --- The token budget -------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [8, 20, 64, 256])
@pytest.mark.parametrize("overlap", [0, 5, 30])
def test_every_chunk_fits_whitespace_counter(max_tokens: int, overlap: int) -> None:
    chunks = chunk(sectioned_document(), whitespace_tokens, max_tokens, overlap)
    assert_fits(chunks, whitespace_tokens, max_tokens)


@pytest.mark.parametrize("max_tokens", [16, 64, 256])
def test_every_chunk_fits_minilm(minilm: Counter, max_tokens: int) -> None:
    chunks = chunk(sectioned_document(), minilm, max_tokens, max_tokens // 5)
    assert_fits(chunks, minilm, max_tokens)


def test_parsed_markdown_fits_minilm(minilm: Counter) -> None:
    lines = ["# Operations", ""]
    for i in range(30):
        lines += [
            f"## Topic {i}",
            "",
            paragraph(i, 1 + i % 13),
            "",
            "```",
            "x = 1 # comment",
            "```",
        ]
        lines += ["", "- " + sentence(i), "- " + sentence(i + 1), ""]
    parsed = parse("\n".join(lines).encode(), filename="ops.md", content_type=None)
    chunks = chunk(parsed, minilm, 128, 20)
    assert_fits(chunks, minilm, 128)
    assert {c.heading_path[:1] for c in chunks} == {("Operations",)}


def test_chunks_are_nearly_full(minilm: Counter) -> None:
    """Greedy packing: only a section's last chunk may be much shorter than the window."""
    long_section = document(*(Block(paragraph(i, 4), ("A",), None) for i in range(60)))
    chunks = chunk(long_section, minilm, 256, 0)
    assert all(c.tokens > 256 * 0.7 for c in chunks[:-1])


def test_heading_is_embedded_not_stored() -> None:
    chunks = chunk(document(Block("Body text.", ("Guide", "Install"), 3)), whitespace_tokens, 50, 0)
    assert chunks == [Chunk(0, "Body text.", ("Guide", "Install"), 3, 5)]
    assert chunks[0].heading == "Guide > Install"
    assert chunks[0].embedding_text == "Guide > Install\nBody text."
    untitled = chunk(document(Block("Body text.", (), None)), whitespace_tokens, 50, 0)
    assert untitled[0].heading == ""
    assert untitled[0].embedding_text == "Body text."


def test_heading_too_long_for_the_window_is_shortened() -> None:
    path = ("Outer", "Middle " + "very " * 40 + "long heading")
    chunks = chunk(document(Block(paragraph(1, 10), path, None)), whitespace_tokens, 30, 0)
    assert_fits(chunks, whitespace_tokens, 30)
    for c in chunks:
        assert c.heading_path[0].startswith("Middle very")  # the innermost heading is kept
        assert whitespace_tokens(c.heading) <= 15


# --- Structure --------------------------------------------------------------------------------


def test_chunks_never_span_sections() -> None:
    doc = sectioned_document()
    chunks = chunk(doc, whitespace_tokens, 64, 10)
    for c in chunks:
        section = " ".join(b.text for b in doc.blocks if b.heading_path == c.heading_path)
        assert " ".join(words(c.text)) in section
    paths = [c.heading_path for c in chunks]
    assert paths == sorted(paths, key=[b.heading_path for b in doc.blocks].index)


def test_small_blocks_of_a_section_are_packed_together() -> None:
    doc = document(
        Block("One.", ("A",), None),
        Block("Two.", ("A",), None),
        Block("Three.", ("B",), None),
        Block("Four.", ("B",), None),
    )
    chunks = chunk(doc, whitespace_tokens, 100, 10)
    assert [(c.heading_path, c.text) for c in chunks] == [
        (("A",), "One.\n\nTwo."),
        (("B",), "Three.\n\nFour."),
    ]


def test_without_overlap_the_text_is_kept_whole_and_in_order() -> None:
    doc = sectioned_document()
    chunks = chunk(doc, whitespace_tokens, 20, 0)
    assert [w for c in chunks for w in words(c.text)] == [
        w for b in doc.blocks for w in words(b.text)
    ]


def test_long_sentence_is_split_at_words() -> None:
    text = " ".join(f"word{i}" for i in range(500))  # one sentence, no punctuation
    chunks = chunk(document(Block(text, (), None)), whitespace_tokens, 64, 0)
    assert_fits(chunks, whitespace_tokens, 64)
    assert all(re.fullmatch(r"(word\d+ )*word\d+", c.text) for c in chunks)
    assert " ".join(c.text for c in chunks) == text


def test_giant_word_is_split_at_characters(minilm: Counter) -> None:
    giant = "".join(chr(ord("a") + i % 26) for i in range(5000))  # one 5,000-character "word"

    def characters(text: str) -> int:  # a counter under which the word really is long
        return len(text) // 4 + 1

    doc = document(Block(f"Before. {giant} after.", ("Data",), None))
    chunks = chunk(doc, characters, 100, 10)
    assert_fits(chunks, characters, 100)
    assert len(chunks) > 10
    minilm_chunks = chunk(doc, minilm, 32, 8)
    assert_fits(minilm_chunks, minilm, 32)
    assert giant in "".join(c.text for c in chunk(doc, characters, 100, 0))


def test_estimates_that_run_short_are_corrected() -> None:
    """A counter under which pieces cost less apart than together: the whole chunk is checked."""

    def joined_costs_more(text: str) -> int:
        return len(text.split()) + 4 * text.count("\n\n")

    doc = document(*(Block(paragraph(i, 2), (), None) for i in range(40)))
    chunks = chunk(doc, joined_costs_more, 40, 5)
    assert_fits(chunks, joined_costs_more, 40)


def test_empty_blocks_are_skipped() -> None:
    doc = document(Block("  \n ", ("A",), None), Block("Text.", ("B",), None), Block("", (), 2))
    assert [c.text for c in chunk(doc, whitespace_tokens, 10, 2)] == ["Text."]
    assert chunk(document(), whitespace_tokens, 10, 2) == []
    assert chunk(document(Block(" ", (), None)), whitespace_tokens, 10, 2) == []


def test_window_too_small_for_text_is_a_programming_error(minilm: Counter) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk(document(Block("Text.", (), None)), minilm, 3, 0)  # [CLS] and [SEP] take 2


# --- Overlap ----------------------------------------------------------------------------------


def test_overlap_repeats_whole_sentences_within_bound() -> None:
    doc = document(Block(" ".join(sentence(i) for i in range(200)), ("A",), None))
    chunks = chunk(doc, whitespace_tokens, 80, 25)  # sentences have at most 23 words
    assert_fits(chunks, whitespace_tokens, 80)
    sentences = [sentence(i) for i in range(200)]
    for previous, current in itertools.pairwise(chunks):
        shared = [s for s in sentences if s in previous.text and s in current.text]
        assert shared, "consecutive chunks of a section share text"
        overlap = " ".join(shared)
        assert current.text.startswith(overlap)
        assert previous.text.endswith(overlap)
        assert whitespace_tokens(overlap) <= 25


def test_no_overlap_across_sections() -> None:
    doc = document(
        Block(paragraph(1, 20), ("A",), None),
        Block(paragraph(2, 20), ("B",), None),
    )
    chunks = chunk(doc, whitespace_tokens, 40, 15)
    first_of_b = next(c for c in chunks if c.heading_path == ("B",))
    assert first_of_b.text.startswith(sentence(200))


@pytest.mark.parametrize("overlap", [64, 65, 1000])
def test_overlap_at_or_above_max_is_clamped(overlap: int, minilm: Counter) -> None:
    doc = document(Block(paragraph(3, 60), ("A",), None))
    for count in (whitespace_tokens, minilm):
        started = time.perf_counter()
        chunks = chunk(doc, count, 64, overlap)
        assert time.perf_counter() - started < 5
        assert_fits(chunks, count, 64)
        assert 1 < len(chunks) < 3 * len(chunk(doc, count, 64, 0))


# --- Bookkeeping ------------------------------------------------------------------------------


def test_page_is_where_the_chunk_starts() -> None:
    doc = document(*(Block(paragraph(p, 6), (), p) for p in range(1, 6)))
    chunks = chunk(doc, whitespace_tokens, 50, 0)
    for c in chunks:
        assert c.page is not None
        first = " ".join(words(c.text)[:8])
        assert first in " ".join(words(doc.blocks[c.page - 1].text))
    assert [c.page for c in chunks] == sorted(c.page or 0 for c in chunks)
    assert {c.page for c in chunks} == {1, 2, 3, 4, 5}


def test_ordinals_are_consecutive() -> None:
    chunks = chunk(sectioned_document(), whitespace_tokens, 30, 5)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_deterministic(minilm: Counter) -> None:
    first = chunk(sectioned_document(), minilm, 64, 16)
    second = chunk(sectioned_document(), minilm, 64, 16)
    assert first == second


def test_megabyte_document_chunks_quickly(minilm: Counter) -> None:
    paragraphs = []
    size = 0
    seed = 0
    while size < 1_000_000:
        paragraphs.append(paragraph(seed, 1 + seed % 8))
        size += len(paragraphs[-1]) + 2
        seed += 1
    text = "\n\n".join(paragraphs)
    doc = parse(text.encode(), filename="big.txt", content_type=None)
    started = time.perf_counter()
    chunks = chunk(doc, minilm, 256, 32)
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"1 MB took {elapsed:.1f} s"  # a sanity guard: ~1 s is typical
    assert_fits(chunks, minilm, 256)
