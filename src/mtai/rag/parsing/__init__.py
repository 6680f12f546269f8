"""Uploaded bytes to paragraph-level blocks of text, or a ParseError the uploader can act on.

Pure: no I/O beyond the bytes given. `detect` tells what the bytes are (content first; the name
and content type only choose among text formats), then one module per format family builds the
blocks: `pdf`, `word` (.docx), `text` (plain, Markdown), `html` and `data` (CSV, JSON). Every
failure on bad input is a ParseError whose message is a complete sentence for the end user; the
library's own exception is kept as its __cause__. Everything is linear in the size of the input,
and `ContentLimits` caps what a document may expand to (pages, characters, inflated bytes).

Parser libraries are not hardened against hostile files, so the server never calls `parse` in
its own process: `sandbox` runs it in a child process (`child`) under memory, CPU-time and
wall-clock limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mtai.rag.parsing import detect
from mtai.rag.parsing.data import parse_csv, parse_json
from mtai.rag.parsing.model import (
    Block,
    ContentLimits,
    DocumentKind,
    LimitExceeded,
    ParsedDocument,
    ParseError,
)
from mtai.rag.parsing.text import parse_markdown, parse_plain, sniff

__all__ = [
    "UNLIMITED",
    "Block",
    "ContentLimits",
    "DocumentKind",
    "LimitExceeded",
    "ParseError",
    "ParsedDocument",
    "parse",
]

_NO_TEXT = {
    DocumentKind.PDF: (
        "The PDF has no text layer (it is probably scanned, or made of images); OCR is not "
        "supported, so upload a PDF with selectable text."
    ),
    DocumentKind.DOCX: "The Word document contains no text; add content and upload it again.",
    DocumentKind.CSV: "The CSV file has no data rows below its header; upload a file with data.",
    DocumentKind.JSON: "The JSON file contains no values; upload a file with data.",
}
UNLIMITED = ContentLimits()
_JSON_START = re.compile(r"\s*[\[{]")


def _parse_html(text: str, limits: ContentLimits) -> ParsedDocument:
    from mtai.rag.parsing.html import parse_html

    return parse_html(text, limits)


_TEXT_PARSERS: dict[DocumentKind, Callable[[str, ContentLimits], ParsedDocument]] = {
    DocumentKind.TEXT: parse_plain,
    DocumentKind.MARKDOWN: parse_markdown,
    DocumentKind.HTML: _parse_html,
    DocumentKind.CSV: parse_csv,
    DocumentKind.JSON: parse_json,
}


def parse(
    data: bytes,
    *,
    filename: str | None,
    content_type: str | None,
    limits: ContentLimits = UNLIMITED,
) -> ParsedDocument:
    """The blocks of an uploaded file; ParseError (only) if it cannot be ingested."""
    if not data or data.isspace():
        raise ParseError(detect.EMPTY)
    label = detect.label(filename, content_type)
    content = detect.identify(data)
    detect.check_label(content, label)
    # pypdf, python-docx and BeautifulSoup load only for the documents that need them: the
    # sandbox starts a new process per document, and the three take about 0.5 s to import.
    if content.kind is DocumentKind.PDF:
        from mtai.rag.parsing.pdf import parse_pdf

        document = parse_pdf(data, limits)
    elif content.kind is DocumentKind.DOCX:
        from mtai.rag.parsing.word import parse_docx

        document = parse_docx(data, limits)
    else:
        document = _parse_text(content.text, label.kind if label else None, limits)
    if not document.blocks:
        raise ParseError(
            _NO_TEXT.get(document.kind, "The file contains no text; upload a file with content.")
        )
    return document


def _parse_text(text: str, kind: DocumentKind | None, limits: ContentLimits) -> ParsedDocument:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if kind is None:
        if _JSON_START.match(text):
            try:
                return parse_json(text, limits)
            except LimitExceeded:
                raise
            except ParseError:
                pass  # starts like JSON but is not: sniff on
        kind = sniff(text)
    return _TEXT_PARSERS[kind](text, limits)
