"""What the dataset builders share: the three files of a known-item set, written or checked."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

Documents = list[dict[str, str]]
Queries = list[dict[str, str]]
Judgements = list[tuple[str, str]]  # (query id, its one relevant document id)


def known_item_files(documents: Documents, queries: Queries, qrels: Judgements) -> dict[str, str]:
    """documents.jsonl, queries.jsonl and qrels.tsv (relevance 2: the one document sought)."""
    return {
        "documents.jsonl": "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents),
        "queries.jsonl": "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries),
        "qrels.tsv": "query_id\tdocument_id\trelevance\n"
        + "".join(f"{q}\t{d}\t2\n" for q, d in qrels),
    }


def write_or_check(built: dict[str, str], out: Path, check: bool) -> int:
    """Write the files into `out`, or (check) exit 1 when those on disk differ from `built`."""
    if check:
        stale = [
            name
            for name, text in built.items()
            if not (out / name).exists() or (out / name).read_text(encoding="utf-8") != text
        ]
        if stale:
            print(f"differs from a fresh build: {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in built.items():
        (out / name).write_text(text, encoding="utf-8")
    lines = {name: text.count("\n") for name, text in built.items()}
    print(f"wrote {out}: {lines}")
    return 0


def command_line(
    description: str,
    source: str,
    default_source: Path,
    default_out: Path,
    build: Callable[[Path], tuple[Documents, Queries, Judgements]],
    language: str | None = None,
) -> int:
    """A builder's command: `--SOURCE DIR --out DIR --check`. `language`: the set's text
    search configuration, written to dataset.json (the evaluation's knowledge base uses it)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(f"--{source}", type=Path, default=default_source, dest="source")
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--check", action="store_true", help="fail if the files differ")
    args = parser.parse_args()
    built = known_item_files(*build(args.source))
    if language is not None:
        built["dataset.json"] = json.dumps({"language": language}) + "\n"
    return write_or_check(built, args.out, args.check)
