#!/usr/bin/env python3
"""Build eval/datasets/man-pages from the manual pages installed under /usr/share/man.

Source: sections 1 (user commands) and 8 (administration) of the English manual pages of a
Debian 12 machine, rendered to plain text by `man -l` (man-db, groff). No network access. A
known-item set of reference material unlike the tuning set (terse option lists, synopses):

1. the candidates are the regular files `NAME.1.gz` and `NAME.8.gz` (symbolic links are
   aliases of other pages; suffixed sections such as `1ssl` or `1p` are left out, and so are
   the Google Cloud SDK's ~16,600 generated `gcloud_*` pages, which would otherwise make up
   nine in ten of the set), taken in the order of the SHA-256 of their file name, a stable
   shuffle across packages;
2. each is rendered at 80 columns without hyphenation or justification; the header and footer
   lines go, and so does the NAME section: its one-line description becomes the page's query;
3. a page is kept when its description has at least MIN_QUERY_WORDS words and the rest has
   MIN_WORDS to MAX_WORDS words, until DOCUMENTS pages are kept;
4. a document is one page: `id` NAME.SECTION, `title` NAME(SECTION), `text` the rendered page
   without NAME; the first QUERIES kept pages whose description no other kept page shares
   become queries, each with its page as the one relevant document (relevance 2).

`--check` rebuilds in memory and fails if the files on disk differ (on a machine with the same
pages installed).

Usage: python eval/build_man_pages.py [--man DIR] [--out DIR] [--check]
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from dataset_files import Documents, Judgements, Queries, command_line

DOCUMENTS = 400
QUERIES = 150
MIN_QUERY_WORDS = 3
MIN_WORDS = 80
MAX_WORDS = 5000
EXCLUDED_PREFIX = "gcloud"
DEFAULT_MAN = Path("/usr/share/man")
DEFAULT_OUT = Path(__file__).resolve().parent / "datasets" / "man-pages"
PAGE = re.compile(r"^(?P<name>[A-Za-z0-9_+.-]+)\.(?P<section>[0-9])\.gz$")
NAME_HEADINGS = ("NAME", "BEZEICHNUNG")  # German pages name it either way
SECTION_HEADING = re.compile(r"^[A-ZÄÖÜ][A-ZÄÖÜ0-9 ,/&()-]*$")  # German headings: ÜBERSICHT


def candidates(man: Path, sections: str = "18") -> list[tuple[Path, str, str]]:
    found = []
    for section in sections:
        for path in (man / f"man{section}").iterdir():
            match = PAGE.match(path.name)
            if (
                match
                and path.is_file()
                and not path.is_symlink()
                and not match["name"].startswith(EXCLUDED_PREFIX)
            ):
                found.append((path, match["name"], match["section"]))
    return sorted(found, key=lambda c: hashlib.sha256(c[0].name.encode()).hexdigest())


def render(path: Path) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MANWIDTH": "80", "LANG": "C.UTF-8"}
    result = subprocess.run(  # noqa: S603  # man-db on a path of our own listing
        ["man", "--no-hyphenation", "--no-justification", "-E", "UTF-8", "-l", str(path)],  # noqa: S607
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return result.stdout if result.returncode == 0 else ""


def split_page(rendered: str) -> tuple[str, str] | None:
    """(the NAME description, the page without header, footer and NAME), or None."""
    lines = [line.rstrip() for line in rendered.splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 4:
        return None
    body = lines[1:-1]  # the header and footer lines repeat the page's name
    sections: list[tuple[str, list[str]]] = []
    for line in body:
        if line and SECTION_HEADING.match(line):
            sections.append((line, []))
        elif sections:
            sections[-1][1].append(line)
    if not sections or sections[0][0] not in NAME_HEADINGS:
        return None
    name_line = " ".join(" ".join(sections[0][1]).split())
    if " - " not in name_line:
        return None
    description = name_line.split(" - ", 1)[1].strip()
    rest = "\n".join(
        "\n".join([heading, *(line.strip() for line in text)]).strip()
        for heading, text in sections[1:]
    )
    return description, re.sub(r"\n{3,}", "\n\n", rest).strip()


def build(
    man: Path,
    sections: str = "18",
    wanted: int = DOCUMENTS,
    most_queries: int = QUERIES,
) -> tuple[Documents, Queries, Judgements]:
    documents: list[dict[str, str]] = []
    descriptions: list[str] = []
    for path, name, section in candidates(man, sections):
        split = split_page(render(path))
        if split is None:
            continue
        description, text = split
        words = len(text.split())
        if len(description.split()) < MIN_QUERY_WORDS or not MIN_WORDS <= words <= MAX_WORDS:
            continue
        documents.append({"id": f"{name}.{section}", "title": f"{name}({section})", "text": text})
        descriptions.append(description)
        if len(documents) == wanted:
            break
    if len(documents) < wanted:
        raise SystemExit(f"only {len(documents)} usable pages under {man}; {wanted} needed")
    folded = [d.casefold() for d in descriptions]
    queries: list[dict[str, str]] = []
    qrels: list[tuple[str, str]] = []
    for document, description, key in zip(documents, descriptions, folded, strict=True):
        if folded.count(key) == 1 and len(queries) < most_queries:
            queries.append({"id": f"q-{document['id']}", "query": description})
            qrels.append((f"q-{document['id']}", document["id"]))
    return documents, queries, qrels


def main() -> int:
    description = (__doc__ or "").split("\n\n")[0]
    return command_line(description, "man", DEFAULT_MAN, DEFAULT_OUT, build)


if __name__ == "__main__":
    sys.exit(main())
