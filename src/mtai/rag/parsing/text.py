"""Plain text and Markdown, and telling them from HTML (parsed in `html`)."""

from __future__ import annotations

import re

from mtai.rag.parsing.model import (
    PARAGRAPH_BREAK,
    Builder,
    ContentLimits,
    DocumentKind,
    ParsedDocument,
    squash,
)

_HTML_START = re.compile(r"\s*(?:<\?xml[^>]*>\s*)?<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE)
_MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)


def sniff(text: str) -> DocumentKind:
    """HTML, Markdown or plain text, for text that arrived without a telling name or type."""
    if _HTML_START.match(text):
        return DocumentKind.HTML
    if _MARKDOWN_HEADING.search(text):
        return DocumentKind.MARKDOWN
    return DocumentKind.TEXT


def parse_plain(text: str, limits: ContentLimits) -> ParsedDocument:
    builder = Builder(limits)
    for paragraph in PARAGRAPH_BREAK.split(text):
        builder.add(paragraph)
    return builder.document(DocumentKind.TEXT)


# --- Markdown ---------------------------------------------------------------------------------

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
_THEMATIC_BREAK = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
_FRONT_MATTER = re.compile(r"---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|$)", re.DOTALL)


class _Markdown:
    """A line-by-line reader of the block structure: headings, paragraphs, fenced code."""

    def __init__(self, limits: ContentLimits) -> None:
        self.builder = Builder(limits)
        self._paragraph: list[str] = []
        self._fence = ""  # the opening fence while inside a fenced code block
        self._code: list[str] = []

    def feed(self, line: str) -> None:
        if self._fence:
            self._code_line(line)
        elif not line.strip():
            self._flush()
        elif fence := _FENCE_OPEN.match(line):
            self._flush()
            self._fence = fence.group(1)
            self._code = [line]
        elif atx := _ATX.fullmatch(line):
            self._flush()
            self._heading(len(atx.group(1)), atx.group(2) or "")
        elif self._paragraph and (setext := _SETEXT.fullmatch(line)):
            # The underlined paragraph is the heading.
            text = " ".join(self._paragraph)
            self._paragraph = []
            self._heading(1 if setext.group(1)[0] == "=" else 2, text)
        elif _THEMATIC_BREAK.fullmatch(line):
            self._flush()
        else:
            self._paragraph.append(line)

    def finish(self) -> ParsedDocument:
        self._flush()
        self.builder.add("\n".join(self._code))  # a fence left open runs to the end
        return self.builder.document(DocumentKind.MARKDOWN)

    def _code_line(self, line: str) -> None:
        self._code.append(line)
        closing = _FENCE_CLOSE.fullmatch(line)
        if (
            closing
            and closing.group(1)[0] == self._fence[0]
            and len(closing.group(1)) >= len(self._fence)
        ):
            self.builder.add("\n".join(self._code))
            self._fence = ""
            self._code = []

    def _heading(self, level: int, text: str) -> None:
        self.builder.heading(level, text)
        if level == 1 and self.builder.title is None and text.strip():
            self.builder.title = squash(text)

    def _flush(self) -> None:
        self.builder.add("\n".join(self._paragraph))
        self._paragraph = []


def parse_markdown(text: str, limits: ContentLimits) -> ParsedDocument:
    # YAML front matter would otherwise read as a paragraph underlined into a heading.
    front_matter = _FRONT_MATTER.match(text)
    if front_matter:
        text = text[front_matter.end() :]
    reader = _Markdown(limits)
    for line in text.split("\n"):
        reader.feed(line)
    return reader.finish()
