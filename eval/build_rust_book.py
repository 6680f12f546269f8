#!/usr/bin/env python3
"""Build eval/datasets/rust-book from "The Rust Programming Language" as rustup installs it.

Source: the HTML of the book under `<toolchain>/share/doc/rust/html/book/` (rustup's `rust-docs`
component; MIT or Apache-2.0). No network access. A known-item set, of a kind and subject that
no parameter of mtai was tuned on:

1. every chapter page (`chNN-MM-*.html`) is read from its `<main>` element; its first heading
   (h1 or h2) names the page; every h3 starts a section; h4 and deeper stay inside the text;
2. a document is one section: `title` is the page's heading, `text` the section's prose, lists,
   code and captions **without its own heading**; the page's text before its first h3 is a
   document too (without the page heading); documents under MIN_WORDS words are dropped;
3. a query is a section's heading, when it has at least MIN_QUERY_WORDS words and no other
   section has the same heading; its one relevant document (relevance 2) is that section.

A query thus describes what its section is about in the book's own words, but the words are
not in the section's text as a heading would be: a search has to find the section from what
it says. `--check` rebuilds in memory and fails if the files on disk differ.

Usage: python eval/build_rust_book.py [--book DIR] [--out DIR] [--check]
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from dataset_files import Documents, Judgements, Queries, command_line

MIN_WORDS = 40
MIN_QUERY_WORDS = 3
DEFAULT_BOOK = (
    Path.home() / ".rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/book"
)
DEFAULT_OUT = Path(__file__).resolve().parent / "datasets" / "rust-book"
PAGE = re.compile(r"^ch\d\d-\d\d-.+\.html$")
BLOCKS = {"p", "li", "pre", "figcaption", "blockquote", "tr", "h4", "h5", "h6", "dt", "dd"}


@dataclass
class Section:
    heading: str
    level: int
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(line for line in self.lines if line.strip()).strip()


class BookPage(HTMLParser):
    """The sections of one page's `<main>`: text per block element, headings h1-h3 split."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0  # inside <main> when > 0
        self.sections: list[Section] = [Section("", 0)]
        self.heading: list[str] | None = None
        self.heading_level = 0
        self.buffer: list[str] = []
        self.in_pre = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "main":
            self.depth += 1
        if not self.depth:
            return
        if tag in ("h1", "h2", "h3"):
            self._flush()
            self.heading, self.heading_level = [], int(tag[1])
        elif tag in BLOCKS:
            self._flush()
            self.in_pre = self.in_pre or tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if not self.depth:
            return
        if tag == "main":
            self._flush()
            self.depth -= 1
        elif tag in ("h1", "h2", "h3") and self.heading is not None:
            title = " ".join("".join(self.heading).split())
            self.sections.append(Section(title, self.heading_level))
            self.heading = None
        elif tag in BLOCKS:
            self._flush()
            if tag == "pre":
                self.in_pre = False

    def handle_data(self, data: str) -> None:
        if not self.depth:
            return
        if self.heading is not None:
            self.heading.append(data)
        else:
            self.buffer.append(data)

    def _flush(self) -> None:
        text = "".join(self.buffer)
        self.buffer = []
        if self.in_pre:
            lines = [line.rstrip() for line in text.strip("\n").splitlines()]
        else:
            lines = [" ".join(text.split())]
        self.sections[-1].lines.extend(line for line in lines if line.strip())


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def build(book: Path) -> tuple[Documents, Queries, Judgements]:
    pages = sorted(p for p in book.iterdir() if PAGE.match(p.name))
    if not pages:
        raise SystemExit(f"no chapter pages (chNN-MM-*.html) under {book}")
    documents: list[dict[str, str]] = []
    headings: dict[str, list[tuple[str, str]]] = {}  # case-folded heading -> (doc id, heading)
    for page in pages:
        parser = BookPage()
        parser.feed(page.read_text(encoding="utf-8"))
        sections = [s for s in parser.sections if s.level or s.lines]
        titled = [s for s in sections if s.level in (1, 2)]
        page_title = titled[0].heading if titled else page.stem
        for section in sections:
            text = section.text()
            if len(text.split()) < MIN_WORDS:
                continue
            is_page = section.level in (0, 1, 2)
            doc_id = page.stem if is_page else f"{page.stem}--{slug(section.heading)}"
            if any(d["id"] == doc_id for d in documents):
                continue  # a page with text both before and under its title: keep the first
            documents.append({"id": doc_id, "title": page_title, "text": text})
            if section.level == 3 and len(section.heading.split()) >= MIN_QUERY_WORDS:
                headings.setdefault(section.heading.lower(), []).append((doc_id, section.heading))
    queries, qrels = [], []
    for found in headings.values():
        if len(found) != 1:
            continue  # the same heading in two places: not a known item
        doc_id, heading = found[0]
        queries.append({"id": f"q-{doc_id}", "query": heading})
        qrels.append((f"q-{doc_id}", doc_id))
    return documents, queries, qrels


def main() -> int:
    description = (__doc__ or "").split("\n\n")[0]
    return command_line(description, "book", DEFAULT_BOOK, DEFAULT_OUT, build)


if __name__ == "__main__":
    sys.exit(main())
