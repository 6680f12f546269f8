"""Retrieval evaluation: load a judged dataset and score document rankings against it.

A dataset is a directory of three files (eval/README.md documents the format):

- ``documents.jsonl``: one ``{"id", "title", "text"}`` object per line;
- ``queries.jsonl``: one ``{"id", "query"}`` object per line, optionally ``"type"``;
- ``qrels.tsv``: header ``query_id<TAB>document_id<TAB>relevance``, then one judgement per row,
  relevance an integer >= 1 (graded; a pair without a row is not relevant).

Relevance is judged per document. A system ranks chunks; its document ranking for a query is
the order in which documents first appear among those chunks (`dedupe_documents`).

Metrics, for one query, from a ranked list of document ids and the query's judgements:

- nDCG@k: gain ``2**rel - 1`` discounted by ``log2(rank + 1)`` (rank from 1), summed over the
  first k documents, divided by the same sum for the ideal ordering of the judged documents;
- recall@k: the share of the relevant documents (rel >= 1) found in the first k;
- reciprocal rank: ``1 / rank`` of the first relevant document anywhere in the list, not only
  in the first k (0 when none is found); its mean over queries is the MRR.

A document id repeated in a ranking counts at its first position only. A query with no
relevant document scores 0 on every metric (load_dataset refuses such queries).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DOCUMENTS_FILE = "documents.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_FILE = "qrels.tsv"
SETTINGS_FILE = "dataset.json"  # optional: {"language": ...}
QRELS_HEADER = ("query_id", "document_id", "relevance")
_HEADER_TEXT = "\t".join(QRELS_HEADER)
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class EvalDocument:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class EvalQuery:
    id: str
    query: str
    kind: str | None  # the optional "type" field: "semantic", "keyword", "mixed"...


@dataclass(frozen=True)
class Dataset:
    documents: list[EvalDocument]
    queries: list[EvalQuery]
    qrels: dict[str, dict[str, int]]  # query id -> document id -> relevance (>= 1)
    language: str = "english"  # keyword search's configuration (dataset.json), e.g. german


class DatasetError(Exception):
    """A dataset file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class ModeScores:
    """Mean scores of one retrieval mode over every query of a dataset."""

    mode: str
    ndcg_at_10: float
    recall_at_10: float
    mrr: float
    queries: int


# -- loading ----------------------------------------------------------------------------------


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered (from 1) non-blank lines of a UTF-8 file, without their line endings."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not valid UTF-8 ({exc.reason})") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    for number, line in _read_lines(path):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object")
        yield number, value


def _string_field(obj: Mapping[str, object], name: str, where: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        problem = "missing" if value is None else f"not a string: {value!r}"
        raise DatasetError(f"{where}: field {name!r} {problem}")
    return value


def _identifier(obj: Mapping[str, object], where: str) -> str:
    value = _string_field(obj, "id", where)
    if not value.strip():
        raise DatasetError(f"{where}: field 'id' is empty")
    if value != value.strip() or "\t" in value:
        raise DatasetError(f"{where}: field 'id' has surrounding whitespace or a tab: {value!r}")
    return value


def _load_documents(path: Path) -> list[EvalDocument]:
    documents: list[EvalDocument] = []
    first_seen: dict[str, int] = {}
    for number, obj in _json_objects(path):
        where = f"{path}:{number}"
        doc_id = _identifier(obj, where)
        if doc_id in first_seen:
            raise DatasetError(
                f"{where}: duplicate document id {doc_id!r} (first on line {first_seen[doc_id]})"
            )
        first_seen[doc_id] = number
        title = _string_field(obj, "title", where)
        text = _string_field(obj, "text", where)
        if not text.strip():
            raise DatasetError(f"{where}: document {doc_id!r} has an empty text")
        documents.append(EvalDocument(id=doc_id, title=title, text=text))
    if not documents:
        raise DatasetError(f"{path}: no documents")
    return documents


def _load_queries(path: Path) -> list[EvalQuery]:
    queries: list[EvalQuery] = []
    first_seen: dict[str, int] = {}
    for number, obj in _json_objects(path):
        where = f"{path}:{number}"
        query_id = _identifier(obj, where)
        if query_id in first_seen:
            raise DatasetError(
                f"{where}: duplicate query id {query_id!r} (first on line {first_seen[query_id]})"
            )
        first_seen[query_id] = number
        query = _string_field(obj, "query", where)
        if not query.strip():
            raise DatasetError(f"{where}: query {query_id!r} is empty")
        kind = _string_field(obj, "type", where) if obj.get("type") is not None else None
        queries.append(EvalQuery(id=query_id, query=query, kind=kind))
    if not queries:
        raise DatasetError(f"{path}: no queries")
    return queries


def _load_qrels(
    path: Path, query_ids: set[str], document_ids: set[str]
) -> dict[str, dict[str, int]]:
    lines = _read_lines(path)
    header = next(lines, None)
    if header is None:
        raise DatasetError(f"{path}: empty file, expected the header {_HEADER_TEXT!r}")
    number, line = header
    if tuple(field.strip() for field in line.split("\t")) != QRELS_HEADER:
        raise DatasetError(f"{path}:{number}: expected the header {_HEADER_TEXT!r}, got {line!r}")
    qrels: dict[str, dict[str, int]] = {}
    for number, line in lines:
        where = f"{path}:{number}"
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != 3:
            raise DatasetError(f"{where}: expected 3 tab-separated fields, got {len(fields)}")
        query_id, doc_id, relevance_text = fields
        if query_id not in query_ids:
            raise DatasetError(f"{where}: unknown query id {query_id!r}")
        if doc_id not in document_ids:
            raise DatasetError(f"{where}: unknown document id {doc_id!r}")
        if not _DIGITS.fullmatch(relevance_text) or int(relevance_text) < 1:
            raise DatasetError(
                f"{where}: relevance must be an integer >= 1, got {relevance_text!r}"
            )
        relevance = int(relevance_text)
        judged = qrels.setdefault(query_id, {})
        if doc_id in judged:
            raise DatasetError(f"{where}: duplicate judgement for ({query_id!r}, {doc_id!r})")
        judged[doc_id] = relevance
    return qrels


def load_dataset(path: Path) -> Dataset:
    """Load and validate the dataset in directory `path`; raise DatasetError on any problem."""
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory")
    documents = _load_documents(path / DOCUMENTS_FILE)
    queries = _load_queries(path / QUERIES_FILE)
    qrels = _load_qrels(path / QRELS_FILE, {q.id for q in queries}, {d.id for d in documents})
    unjudged = [q.id for q in queries if q.id not in qrels]
    if unjudged:
        shown = ", ".join(repr(q) for q in unjudged[:10])
        more = f" and {len(unjudged) - 10} more" if len(unjudged) > 10 else ""
        raise DatasetError(
            f"{path / QRELS_FILE}: no relevant document judged for query {shown}{more}"
        )
    return Dataset(documents=documents, queries=queries, qrels=qrels, language=_load_language(path))


def _load_language(path: Path) -> str:
    """dataset.json's "language", when the file exists (it is optional)."""
    settings = path / SETTINGS_FILE
    if not settings.exists():
        return "english"
    try:
        loaded = json.loads(settings.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{settings}: not JSON ({exc})") from exc
    language = loaded.get("language") if isinstance(loaded, dict) else None
    if not isinstance(language, str) or not language:
        raise DatasetError(f'{settings}: expected {{"language": "<configuration>"}}')
    return language


# -- metrics ----------------------------------------------------------------------------------


def dedupe_documents(ranked_doc_ids: Sequence[str]) -> list[str]:
    """Document ids in order of first appearance (a chunk ranking -> a document ranking)."""
    return list(dict.fromkeys(ranked_doc_ids))


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _gain(relevance: int) -> float:
    return float(2**relevance - 1) if relevance > 0 else 0.0


def _discount(index: int) -> float:
    """Discount of the document at 0-based `index` (rank index + 1)."""
    return 1.0 / math.log2(index + 2)


def ndcg_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """Normalised DCG of the first k documents; graded gain 2**rel - 1, discount log2(rank+1)."""
    _check_k(k)
    ideal_relevances = sorted((r for r in judged.values() if r > 0), reverse=True)[:k]
    ideal = sum(_gain(r) * _discount(i) for i, r in enumerate(ideal_relevances))
    if ideal == 0.0:
        return 0.0
    top = dedupe_documents(ranked)[:k]
    dcg = sum(_gain(judged.get(doc_id, 0)) * _discount(i) for i, doc_id in enumerate(top))
    return dcg / ideal


def recall_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """Share of the relevant documents (rel >= 1) among the first k of the ranking."""
    _check_k(k)
    relevant = {doc_id for doc_id, r in judged.items() if r > 0}
    if not relevant:
        return 0.0
    found = relevant.intersection(dedupe_documents(ranked)[:k])
    return len(found) / len(relevant)


def reciprocal_rank(ranked: Sequence[str], judged: Mapping[str, int]) -> float:
    """1 / rank of the first relevant document anywhere in the ranking (no cut-off); else 0."""
    for index, doc_id in enumerate(dedupe_documents(ranked)):
        if judged.get(doc_id, 0) > 0:
            return 1.0 / (index + 1)
    return 0.0


def score_mode(
    mode: str, rankings: Mapping[str, Sequence[str]], dataset: Dataset, k: int = 10
) -> ModeScores:
    """Mean nDCG@k, recall@k and MRR over all the dataset's queries.

    `rankings` maps a query id to its ranked document ids (duplicates allowed: each counts at
    its first position). A query without a ranking counts as an empty ranking (scores 0). The
    fields are named for k = 10, the cut-off of the report; they hold the @k values.
    """
    _check_k(k)
    known = {q.id for q in dataset.queries}
    unknown = sorted(set(rankings) - known)
    if unknown:
        raise ValueError(f"rankings for unknown query ids: {unknown[:10]}")
    if not dataset.queries:
        return ModeScores(mode=mode, ndcg_at_10=0.0, recall_at_10=0.0, mrr=0.0, queries=0)
    ndcg = recall = rr = 0.0
    for query in dataset.queries:
        ranked = rankings.get(query.id, [])
        judged = dataset.qrels.get(query.id, {})
        ndcg += ndcg_at_k(ranked, judged, k)
        recall += recall_at_k(ranked, judged, k)
        rr += reciprocal_rank(ranked, judged)
    n = len(dataset.queries)
    return ModeScores(
        mode=mode, ndcg_at_10=ndcg / n, recall_at_10=recall / n, mrr=rr / n, queries=n
    )


def format_report(scores: Sequence[ModeScores]) -> str:
    """A Markdown table, columns aligned so that it also reads as plain text."""
    return _table(("mode", "nDCG@10", "recall@10", "MRR", "queries"), [_cells(s) for s in scores])


def format_sets(by_set: Mapping[str, Sequence[ModeScores]]) -> str:
    """One table for several datasets: a row per dataset and mode."""
    return _table(
        ("set", "mode", "nDCG@10", "recall@10", "MRR", "queries"),
        [(name, *_cells(s)) for name, scores in by_set.items() for s in scores],
    )


def _cells(s: ModeScores) -> tuple[str, ...]:
    return (s.mode, f"{s.ndcg_at_10:.3f}", f"{s.recall_at_10:.3f}", f"{s.mrr:.3f}", str(s.queries))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Text columns (those before the first number) left-aligned, numbers right-aligned."""
    text_columns = sum(1 for h in header if h in ("set", "mode"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (w + 2) if i < text_columns else "-" * (w + 1) + ":" for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(row) for row in rows)]) + "\n"
