"""Parsed documents to passages that fit the embedding model's window.

The invariant: count_tokens(chunk.embedding_text) <= max_tokens for every chunk, since the model
silently truncates beyond that and the cut text would never be found. Packing works on token
counts taken once per sentence and summed (cheap, nearly exact for word-piece tokenizers); every
finished chunk is then counted whole, and split again in the rare case the sum was short.

A chunk never spans two sections (heading paths): a passage is retrieved, and shown, under one
heading. Within a section, blocks are packed greedily and consecutive chunks overlap by whole
sentences, so a statement cut by a chunk boundary is still whole in one of the two chunks.
Everything here is deterministic: re-ingesting a document yields the same chunks.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from mtai.rag.parsing import Block, ParsedDocument

_HEADING_SEPARATOR = " > "

# Where a block may be split: after a sentence's end (with any closing quote or bracket) and the
# whitespace that follows, or after a line break.
_BOUNDARY = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*\s+|\n\s*")


@dataclass(frozen=True)
class Chunk:
    ordinal: int  # 0..n-1 in document order
    text: str  # the passage as stored and shown to users
    heading_path: tuple[str, ...]
    page: int | None  # page where the chunk starts
    tokens: int  # tokens of embedding_text

    @property
    def heading(self) -> str:
        return _HEADING_SEPARATOR.join(self.heading_path)

    @property
    def embedding_text(self) -> str:
        """What is embedded: the heading gives the passage its context."""
        heading = self.heading
        return f"{heading}\n{self.text}" if heading else self.text


def chunk_document(
    doc: ParsedDocument,
    count_tokens: Callable[[str], int],
    *,
    max_tokens: int,
    overlap_tokens: int,
) -> list[Chunk]:
    """The document's passages in order; empty only if the document has no text."""
    chunker = _Chunker(count_tokens, max_tokens, overlap_tokens)
    for heading_path, blocks in itertools.groupby(doc.blocks, key=lambda b: b.heading_path):
        chunker.add_section(heading_path, [b for b in blocks if b.text.strip()])
    return chunker.chunks


@dataclass(frozen=True, slots=True)
class _Piece:
    """A sentence (or a cut of an overlong one): the unit chunks are packed from."""

    text: str  # with its trailing whitespace: the pieces of a block concatenate back into it
    block: int  # index of its block in the section: blocks are joined by a blank line
    page: int | None
    tokens: int  # count_tokens(text) less the counter's fixed overhead


class _Chunker:
    def __init__(self, count_tokens: Callable[[str], int], max_tokens: int, overlap: int) -> None:
        self._count = count_tokens
        # Tokens every count includes whatever the text ([CLS] and [SEP] for BERT): subtracted
        # from each piece so that pieces add up, and paid once per chunk.
        self._overhead = count_tokens("")
        self._max = max_tokens
        if max_tokens - self._overhead < 2:
            raise ValueError(f"max_tokens={max_tokens} leaves no room for text")
        # An overlap of half a chunk or more would mostly repeat text, and at max_tokens or more
        # the next chunk could hold nothing new.
        self._overlap = max(0, min(overlap, max_tokens // 2))
        self.chunks: list[Chunk] = []

    def add_section(self, heading_path: tuple[str, ...], blocks: Sequence[Block]) -> None:
        if not blocks:
            return
        heading_path, heading_tokens = self._fit_heading(heading_path)
        budget = self._max - self._overhead - heading_tokens
        pieces = list(self._pieces(blocks, budget))
        for group in self._pack(pieces, budget):
            self._emit(heading_path, group, budget)

    def _cost(self, text: str) -> int:
        return self._count(text) - self._overhead

    def _fit_heading(self, path: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
        """The heading path, shortened if it would take more than half the window."""
        limit = (self._max - self._overhead) // 2
        while path:
            tokens = self._cost(_HEADING_SEPARATOR.join(path))
            if tokens <= limit:
                return path, tokens
            if len(path) > 1:
                path = path[1:]  # the innermost headings say the most about the text
            else:
                path = tuple(filter(None, [self._cut(path[0], limit)[0][0].strip()]))
        return (), 0

    def _pieces(self, blocks: Sequence[Block], budget: int) -> Iterator[_Piece]:
        for index, block in enumerate(blocks):
            for sentence in _sentences(block.text.strip()):
                tokens = self._cost(sentence)
                if tokens <= budget:
                    yield _Piece(sentence, index, block.page, tokens)
                    continue
                for text, part_tokens in self._cut(sentence, budget):
                    yield _Piece(text, index, block.page, part_tokens)

    def _cut(self, text: str, budget: int) -> list[tuple[str, int]]:
        """`text` in parts of at most `budget` tokens, at spaces when possible, else anywhere.

        Part lengths come from the text's own tokens-per-character ratio and shrink in
        proportion when a part is still over, so each character is counted a few times at most.
        """
        chars_per_token = len(text) / max(1, self._cost(text))
        parts: list[tuple[str, int]] = []
        start = 0
        while start < len(text):
            size = max(1, int(budget * chars_per_token))
            while True:
                end = _cut_point(text, start, start + size)
                tokens = self._cost(text[start:end])
                if tokens <= budget:
                    break
                if end - start == 1:
                    raise ValueError(f"max_tokens={self._max} cannot hold one character")
                size = max(1, min(end - start - 1, (end - start) * budget // tokens))
            parts.append((text[start:end], tokens))
            start = end
        return parts

    def _pack(self, pieces: list[_Piece], budget: int) -> Iterator[list[_Piece]]:
        """Greedy packing; each chunk after the first starts with the last sentences of the one
        before it, as many as fit in the overlap and leave room for the next piece."""
        current: list[_Piece] = []
        tokens = 0
        for piece in pieces:
            if current and tokens + piece.tokens > budget:
                yield current
                current = _tail(current, min(self._overlap, budget - piece.tokens))
                tokens = sum(p.tokens for p in current)
            current.append(piece)
            tokens += piece.tokens
        if current:
            yield current

    def _emit(self, heading_path: tuple[str, ...], pieces: list[_Piece], budget: int) -> None:
        """Add a chunk, counted whole; if the summed estimate was short, split it and retry."""
        text = _join(pieces)
        if not text:
            return  # only whitespace, left over from cutting at spaces
        heading = _HEADING_SEPARATOR.join(heading_path)
        tokens = self._count(f"{heading}\n{text}" if heading else text)
        if tokens <= self._max:
            chunk = Chunk(len(self.chunks), text, heading_path, pieces[0].page, tokens)
            self.chunks.append(chunk)
        elif len(pieces) > 1:
            middle = len(pieces) // 2
            self._emit(heading_path, pieces[:middle], budget)
            self._emit(heading_path, pieces[middle:], budget)
        else:
            # One piece whose parts tokenize differently apart than together: cut it tighter.
            (piece,) = pieces
            tighter = budget - (tokens - self._max)
            if tighter < 1:
                raise ValueError(f"max_tokens={self._max} cannot hold the heading and any text")
            for text, part_tokens in self._cut(piece.text, tighter):
                part = _Piece(text, piece.block, piece.page, part_tokens)
                self._emit(heading_path, [part], tighter)


def _sentences(text: str) -> Iterator[str]:
    """The sentences and lines of `text`, each with its trailing whitespace."""
    start = 0
    for boundary in _BOUNDARY.finditer(text):
        yield text[start : boundary.end()]
        start = boundary.end()
    if start < len(text):
        yield text[start:]


def _cut_point(text: str, start: int, limit: int) -> int:
    """Where a part starting at `start` and at most `limit` should end: after the last space."""
    if limit >= len(text):
        return len(text)
    space = text.rfind(" ", start + 1, limit)
    return space + 1 if space > start else limit


def _tail(pieces: list[_Piece], limit: int) -> list[_Piece]:
    """The longest run of whole pieces at the end of `pieces` within `limit` tokens."""
    tokens = 0
    start = len(pieces)
    while start > 0 and tokens + pieces[start - 1].tokens <= limit:
        start -= 1
        tokens += pieces[start].tokens
    return pieces[start:]


def _join(pieces: list[_Piece]) -> str:
    """Pieces of one block run on; blocks are separated by a blank line."""
    groups = itertools.groupby(pieces, key=lambda p: p.block)
    return "\n\n".join("".join(p.text for p in group).strip() for _, group in groups)
