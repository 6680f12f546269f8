"""What parsing produces (blocks of text under their headings), how it fails, and the content
limits every format module enforces while it builds the blocks."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class DocumentKind(StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"
    CSV = "csv"
    JSON = "json"


class ParseError(Exception):
    """A document that cannot be ingested; str(exc) is a complete sentence for the end user
    saying what is wrong and what to do (e.g. 'The PDF is encrypted; remove its password and
    upload it again.')."""


class LimitExceeded(ParseError):
    """The document exceeds one of the platform's parse limits. Deterministic: the same file
    fails the same way again, so it is never retried. The message names the limit's setting."""


def limit_exceeded(what: str, setting: str, limit: object) -> LimitExceeded:
    """'<what>; the limit is <limit> (<setting>). <advice>' as one exception."""
    return LimitExceeded(
        f"{what}; the limit is {limit} (setting {setting}). Split the document into smaller "
        "files and upload them, or ask the platform administrator to raise the limit."
    )


@dataclass(frozen=True)
class ContentLimits:
    """Caps the parser enforces itself, on what a document expands to; None: no cap (trusted
    input such as tests and benchmarks; the server always sets every one)."""

    max_pages: int | None = None
    max_chars: int | None = None  # extracted text, headings included
    max_decompressed_bytes: int | None = None  # what a ZIP container's members inflate to
    max_compression_ratio: float | None = None  # inflated size / file size


@dataclass(frozen=True)
class Block:
    """A paragraph-level piece of text in reading order."""

    text: str
    heading_path: tuple[str, ...]  # enclosing headings, outermost first ("Guide", "Install")
    page: int | None  # 1-based page for PDFs, else None


@dataclass(frozen=True)
class ParsedDocument:
    kind: DocumentKind
    blocks: list[Block]
    title: str | None  # <title>, PDF metadata, DOCX core properties, first Markdown H1


PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Rows or JSON lines per block: enough context per passage, and few enough that the chunker
# rarely has to split a block (it never splits inside a row).
LINES_PER_BLOCK = 20


class Builder:
    """Blocks in reading order under the headings open at the current point of the document,
    counting the characters kept against `limits.max_chars` as it goes."""

    def __init__(self, limits: ContentLimits) -> None:
        self.blocks: list[Block] = []
        self.title: str | None = None
        self._headings: list[tuple[int, str]] = []  # (level, text), outermost first
        self._max_chars = limits.max_chars
        self._chars = 0

    def heading(self, level: int, text: str) -> None:
        """A heading closes those at its level and deeper, then encloses what follows."""
        while self._headings and self._headings[-1][0] >= level:
            self._headings.pop()
        text = squash(text)
        if text:
            self._count(text)
            self._headings.append((level, text))

    def add(self, text: str, page: int | None = None) -> None:
        # PostgreSQL text cannot hold NUL, which PDF and DOCX extraction can produce.
        text = text.replace("\x00", "").strip()
        if text:
            self._count(text)
            self.blocks.append(Block(text, tuple(t for _, t in self._headings), page))

    def add_grouped(self, lines: Iterable[str]) -> None:
        """Lines (rows, JSON values) a few per block, never splitting a line."""
        group: list[str] = []
        for line in lines:
            group.append(line)
            if len(group) == LINES_PER_BLOCK:
                self.add("\n".join(group))
                group = []
        self.add("\n".join(group))

    def document(self, kind: DocumentKind) -> ParsedDocument:
        return ParsedDocument(kind, self.blocks, self.title)

    def _count(self, text: str) -> None:
        self._chars += len(text)
        if self._max_chars is not None and self._chars > self._max_chars:
            raise limit_exceeded(
                f"The document holds more than {self._max_chars} characters of text",
                "MTAI_PARSE_MAX_CHARS",
                self._max_chars,
            )


def squash(text: str) -> str:
    """Whitespace runs to single spaces, ends trimmed."""
    return " ".join(text.split())
