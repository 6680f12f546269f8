#!/usr/bin/env python3
"""Build eval/datasets/python-docs/documents.jsonl from the Python reference bundled with CPython.

Source: `pydoc_data.topics.topics`, the plain-text rendering of the Python Language Reference
(and a few Library Reference pages) that CPython ships for `help("topic")`. No network access.

The topics overlap: "compound" holds the whole "Compound statements" chapter, while "if", "for",
"try"... hold its sections again; "specialnames" holds "customization", "attribute-access"... So:

1. every topic is split into paragraphs (blank-line separated, whitespace collapsed);
2. a topic is dropped when at least DUPLICATE_SHARE of its words sit in paragraphs that also
   appear in a longer topic (ties: the later key in sorted order is kept); what remains is,
   bar a few shared sentences, disjoint;
3. a remaining topic longer than SPLIT_WORDS is split at its section headings (the level below
   its title; a piece still longer than SPLIT_WORDS is split again one level deeper); text
   before the first heading becomes its own document when it has at least MIN_WORDS words,
   and is otherwise prepended to the first section;
4. heading underlines (`****`, `====`, `----`, `~~~~`) are removed; headings stay as lines.

The output depends only on the `pydoc_data` of the interpreter running the script; the topics
change between Python releases, so the queries and judgements of the dataset belong to the
version recorded in eval/README.md (CPython 3.11.7). `--check` rebuilds in memory and fails if
the file on disk differs.

Usage: python eval/build_python_docs.py [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from pydoc_data.topics import topics

SPLIT_WORDS = 2000
MIN_WORDS = 60
DUPLICATE_SHARE = 0.9
EXPECTED_PYTHON = (3, 11, 7)
UNDERLINE_LEVELS = "*=-~^"
DEFAULT_OUT = Path(__file__).resolve().parent / "datasets" / "python-docs"


@dataclass
class Section:
    """A heading and the lines under it, up to the next heading of the same or a higher level."""

    heading: str
    level: int
    lines: list[str] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    def text(self, with_heading: bool = True) -> str:
        parts = [self.heading] if with_heading else []
        body = "\n".join(self.lines).strip("\n")
        if body:
            parts.append(body)
        parts.extend(child.text() for child in self.children)
        return "\n\n".join(parts)

    def words(self) -> int:
        return len(self.text().split())


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs with whitespace collapsed, for duplicate detection."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def is_underline(line: str, heading: str) -> bool:
    stripped = line.rstrip()
    return (
        len(stripped) >= 3
        and stripped[0] in UNDERLINE_LEVELS
        and stripped == stripped[0] * len(stripped)
        and len(stripped) == len(heading.rstrip())
        and not heading.startswith(" ")
        and bool(heading.strip())
    )


def parse(text: str) -> Section:
    """Parse a topic into a tree of sections; the first heading is the root (the title)."""
    lines = text.split("\n")
    levels: list[str] = []  # underline characters in order of first appearance
    root: Section | None = None
    stack: list[Section] = []
    preamble: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if is_underline(nxt, line):
            char = nxt[0]
            if char not in levels:
                levels.append(char)
            section = Section(heading=line.strip(), level=levels.index(char))
            if root is None:
                root = section
                root.lines.extend(preamble)
            else:
                while stack and stack[-1].level >= section.level:
                    stack.pop()
                (stack[-1] if stack else root).children.append(section)
            stack.append(section)
            i += 2
            continue
        if stack:
            stack[-1].lines.append(line)
        else:
            preamble.append(line)
        i += 1
    if root is None:
        raise ValueError("topic without a heading")
    return root


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def kept_topics() -> list[str]:
    """Topic keys whose text is not (almost) wholly contained in a longer topic."""
    paras = {key: paragraphs(parse(value).text()) for key, value in topics.items()}
    words = {key: sum(len(p.split()) for p in ps) for key, ps in paras.items()}
    kept: list[str] = []
    for key in sorted(topics):
        total = max(1, words[key])
        duplicated = False
        for other in sorted(topics):
            if other == key or (words[other], other) < (words[key], key):
                continue
            others = set(paras[other])
            shared = sum(len(p.split()) for p in paras[key] if p in others)
            if shared / total >= DUPLICATE_SHARE:
                duplicated = True
                break
        if not duplicated:
            kept.append(key)
    return kept


def split(section: Section, path: list[str]) -> list[tuple[list[str], str]]:
    """(heading path, text) for a short section; otherwise one per child, recursively."""
    here = [*path, section.heading]
    if section.words() <= SPLIT_WORDS or not section.children:
        return [(here, section.text())]
    intro = Section(heading=section.heading, level=section.level, lines=section.lines)
    children = list(section.children)
    pieces: list[tuple[list[str], str]] = []
    if intro.words() - len(section.heading.split()) >= MIN_WORDS:
        pieces.append((here, intro.text()))
    elif intro.words() > len(section.heading.split()):
        first = children[0]
        children[0] = Section(
            heading=first.heading,
            level=first.level,
            lines=[*intro.text(with_heading=False).split("\n"), "", *first.lines],
            children=first.children,
        )
    for child in children:
        pieces.extend(split(child, here))
    return pieces


def document_id(key: str, headings: list[str], depth: int) -> str:
    """The topic key, then the slugs of the last `depth` headings below the topic's title."""
    below_title = headings[1:]
    return "--".join([key, *(slug(h) for h in below_title[len(below_title) - depth :])])


def build() -> list[Document]:
    """Documents in topic key order; an id names the topic and as few headings as keep it unique."""
    pieces = [
        (key, headings, text)
        for key in kept_topics()
        for headings, text in split(parse(topics[key]), [])
    ]
    depth = [min(1, len(h) - 1) for _, h, _ in pieces]
    while True:
        ids = [document_id(k, h, d) for (k, h, _), d in zip(pieces, depth, strict=True)]
        clashing = {i for i in ids if ids.count(i) > 1}
        if not clashing:
            break
        grown = False
        for n, (_, headings, _) in enumerate(pieces):
            if ids[n] in clashing and depth[n] < len(headings) - 1:
                depth[n] += 1
                grown = True
        if not grown:
            raise ValueError(f"duplicate document ids: {sorted(clashing)}")
    return [
        Document(id=doc_id, title=" > ".join(headings), text=text)
        for doc_id, (_, headings, text) in zip(ids, pieces, strict=True)
    ]


def render(docs: list[Document]) -> str:
    return "".join(
        json.dumps({"id": d.id, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n"
        for d in docs
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="dataset directory")
    parser.add_argument("--check", action="store_true", help="fail if documents.jsonl differs")
    args = parser.parse_args(argv)
    if sys.version_info[:3] != EXPECTED_PYTHON:
        print(
            f"warning: Python {sys.version.split()[0]}; the dataset was built with "
            f"{'.'.join(map(str, EXPECTED_PYTHON))} and its judgements refer to that text",
            file=sys.stderr,
        )
    docs = build()
    content = render(docs)
    target: Path = args.out / "documents.jsonl"
    words = sum(len(d.text.split()) for d in docs)
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != content:
            print(f"{target} differs from a fresh build", file=sys.stderr)
            return 1
        print(f"{target} is up to date ({len(docs)} documents, {words} words)")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    print(f"wrote {target}: {len(docs)} documents, {words} words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
