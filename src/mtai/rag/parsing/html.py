"""HTML: the body's text in blocks between block-level elements, headings and tables kept."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag

from mtai.rag.parsing.model import Builder, ContentLimits, DocumentKind, ParsedDocument, squash

_HTML_DROPPED = ("head", "title", "script", "style", "nav", "footer", "noscript", "template")
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
# Elements that end the text before them and start a new block.
_HTML_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "form",
        "header",
        "hgroup",
        "hr",
        "html",
        "li",
        "main",
        "menu",
        "ol",
        "p",
        "section",
        "summary",
        "ul",
    ]
)
_SPACES = re.compile(r"\s+")


class _Html:
    """A walk of the body in document order, building blocks between block-level boundaries."""

    def __init__(self, limits: ContentLimits) -> None:
        self.builder = Builder(limits)
        self._inline: list[str] = []  # text since the last block boundary; "\n" for <br>

    def walk(self, root: Tag) -> None:
        # Iterative: a document nested thousands of elements deep must not exhaust the stack.
        stack: list[tuple[PageElement, bool]] = [(root, False)]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                self._flush()
            elif isinstance(node, Tag):
                stack.extend(self._enter(node))
            elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
                self._inline.append(_SPACES.sub(" ", node))  # comments etc. are Preformatted

    def _enter(self, tag: Tag) -> list[tuple[PageElement, bool]]:
        """Handle a tag; what to walk next, in reverse order (the walk pops from the end)."""
        name = tag.name
        if name in _HTML_HEADINGS:
            self._flush()
            self.builder.heading(_HTML_HEADINGS[name], tag.get_text(" "))
        elif name == "br":
            self._inline.append("\n")
        elif name == "pre":
            self._flush()
            self.builder.add(tag.get_text().strip("\n"))
        elif name == "table":
            self._flush()
            self.builder.add(_html_table(tag))
        else:
            children = [(child, False) for child in reversed(tag.contents)]
            if name in _HTML_BLOCKS:
                self._flush()
                return [(tag, True), *children]
            return children
        return []

    def _flush(self) -> None:
        lines = (squash(line) for line in "".join(self._inline).split("\n"))
        self.builder.add("\n".join(line for line in lines if line))
        self._inline = []


def _html_table(table: Tag) -> str:
    """One 'cell | cell' line per row; a nested table is read as part of its cell."""
    lines = []
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:
            continue
        cells = (squash(cell.get_text(" ")) for cell in row.find_all(["td", "th"], recursive=False))
        line = " | ".join(cell for cell in cells if cell)
        if line:
            lines.append(line)
    return "\n".join(lines)


def parse_html(text: str, limits: ContentLimits) -> ParsedDocument:
    soup = BeautifulSoup(text, "lxml")
    title = squash(soup.title.get_text()) if soup.title else ""
    for tag in soup.find_all(list(_HTML_DROPPED)):
        tag.decompose()
    reader = _Html(limits)
    reader.walk(soup.body or soup)
    reader.builder.title = title or None
    return reader.builder.document(DocumentKind.HTML)
