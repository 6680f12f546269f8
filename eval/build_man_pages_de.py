#!/usr/bin/env python3
"""Build eval/datasets/man-pages-de from the German manual pages under /usr/share/man/de.

The non-English set: built as eval/build_man_pages.py builds man-pages (rendered with man-db,
the NAME section's description as the query, known items), from the German translations that
Debian 12 installs (manpages-de and the packages' own) in sections 1, 5, 7 and 8, whose NAME
section may be headed BEZEICHNUNG. Many translations leave part of a page in English (chage's
description is German, its body English): a German set with mixed passages, as such material
is. dataset.json says `{"language": "german"}`: the evaluation's knowledge base parses it so.

Usage: python eval/build_man_pages_de.py [--man DIR] [--out DIR] [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

from build_man_pages import build
from dataset_files import Documents, Judgements, Queries, command_line

DOCUMENTS = 130  # of the 137 usable pages of a Debian 12 machine
QUERIES = 100
DEFAULT_MAN = Path("/usr/share/man/de")
DEFAULT_OUT = Path(__file__).resolve().parent / "datasets" / "man-pages-de"


def build_german(man: Path) -> tuple[Documents, Queries, Judgements]:
    return build(man, "1578", DOCUMENTS, QUERIES)


def main() -> int:
    description = (__doc__ or "").split("\n\n")[0]
    return command_line(description, "man", DEFAULT_MAN, DEFAULT_OUT, build_german, "german")


if __name__ == "__main__":
    sys.exit(main())
