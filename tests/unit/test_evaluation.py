"""Retrieval metrics, dataset loading, and the shipped python-docs evaluation set."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections import Counter
from pathlib import Path

import pytest

from mtai.rag.evaluation import (
    Dataset,
    DatasetError,
    EvalDocument,
    EvalQuery,
    ModeScores,
    dedupe_documents,
    format_report,
    format_sets,
    load_dataset,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    score_mode,
)

ROOT = Path(__file__).resolve().parents[2]
PYTHON_DOCS = ROOT / "eval" / "datasets" / "python-docs"
BUILDER = ROOT / "eval" / "build_python_docs.py"

# -- metrics ----------------------------------------------------------------------------------


def test_perfect_ranking_scores_one() -> None:
    judged = {"a": 2, "b": 1}
    ranked = ["a", "b", "x"]
    assert ndcg_at_k(ranked, judged) == pytest.approx(1.0)
    assert recall_at_k(ranked, judged) == 1.0
    assert reciprocal_rank(ranked, judged) == 1.0


def test_ranking_without_relevant_documents_scores_zero() -> None:
    judged = {"a": 2, "b": 1}
    for ranked in (["x", "y", "z"], []):
        assert ndcg_at_k(ranked, judged) == 0.0
        assert recall_at_k(ranked, judged) == 0.0
        assert reciprocal_rank(ranked, judged) == 0.0


def test_graded_ndcg_by_hand() -> None:
    judged = {"a": 2, "b": 1, "c": 1}
    # Ranked x, a, b with k = 3; gain 2**rel - 1, discount 1 / log2(rank + 1):
    #   DCG  = 0 + (2**2 - 1)/log2(3) + (2**1 - 1)/log2(4) = 3/1.5849625 + 1/2 = 2.3927893
    #   IDCG = a, b, c = 3/log2(2) + 1/log2(3) + 1/log2(4)  = 3 + 0.6309298 + 0.5 = 4.1309298
    #   nDCG = 2.3927893 / 4.1309298 = 0.5792375
    assert ndcg_at_k(["x", "a", "b"], judged, k=3) == pytest.approx(0.5792375, abs=1e-7)
    # The same ranking in the ideal order scores 1; the ideal order is by relevance.
    assert ndcg_at_k(["a", "c", "b"], judged, k=3) == pytest.approx(1.0)
    # Beyond k nothing counts: a relevant document at rank 4 with k = 3.
    assert ndcg_at_k(["x", "y", "z", "a"], judged, k=3) == 0.0


def test_ndcg_ideal_is_cut_at_k() -> None:
    # Five relevant documents but k = 2: the ideal is only the best two, so two relevant
    # documents of relevance 1 on top score 1.
    judged = dict.fromkeys("abcde", 1)
    assert ndcg_at_k(["a", "b"], judged, k=2) == pytest.approx(1.0)


def test_recall_at_k() -> None:
    judged = {"a": 2, "b": 1, "c": 1}
    assert recall_at_k(["x", "b", "a", "c"], judged, k=2) == pytest.approx(1 / 3)
    assert recall_at_k(["x", "b", "a", "c"], judged, k=3) == pytest.approx(2 / 3)
    assert recall_at_k(["x", "b", "a", "c"], judged, k=10) == 1.0


def test_reciprocal_rank_looks_past_the_cutoff() -> None:
    judged = {"a": 1}
    assert reciprocal_rank(["x", "y", "a"], judged) == pytest.approx(1 / 3)
    ranked = [f"x{i}" for i in range(11)] + ["a"]
    assert reciprocal_rank(ranked, judged) == pytest.approx(1 / 12)


def test_zero_or_negative_relevance_is_not_relevant() -> None:
    judged = {"a": 0, "b": -1, "c": 1}
    assert reciprocal_rank(["a", "b", "c"], judged) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "b", "c"], judged) == 1.0
    assert ndcg_at_k(["a", "b"], judged) == 0.0
    assert ndcg_at_k(["c"], {"a": 0}) == 0.0  # nothing relevant at all: 0, not a division error


def test_metrics_reject_k_below_one() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        ndcg_at_k(["a"], {"a": 1}, k=0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        recall_at_k(["a"], {"a": 1}, k=0)


def test_dedupe_keeps_first_occurrence_order() -> None:
    assert dedupe_documents(["a", "b", "a", "c", "b", "d"]) == ["a", "b", "c", "d"]
    assert dedupe_documents([]) == []


def test_repeated_document_counts_once() -> None:
    judged = {"a": 1, "b": 1}
    # "a" twice (two chunks of one document) is one document: DCG = 1, IDCG = 1 + 1/log2(3).
    expected = 1 / (1 + 1 / math.log2(3))  # 0.6131472
    assert ndcg_at_k(["a", "a"], judged) == pytest.approx(expected)
    assert recall_at_k(["a", "a", "b"], judged, k=2) == 1.0


# -- scoring several queries ------------------------------------------------------------------


def _tiny_dataset() -> Dataset:
    return Dataset(
        documents=[EvalDocument(id=i, title=i, text=f"text {i}") for i in ("a", "b", "c")],
        queries=[
            EvalQuery(id="q1", query="one", kind="keyword"),
            EvalQuery(id="q2", query="two", kind=None),
        ],
        qrels={"q1": {"a": 1}, "q2": {"b": 2, "c": 1}},
    )


def test_score_mode_means_over_all_queries() -> None:
    dataset = _tiny_dataset()
    # q1: "a" first -> nDCG 1, recall 1, RR 1. q2 missing -> an empty ranking, all 0.
    scores = score_mode("vector", {"q1": ["a", "b"]}, dataset)
    assert scores == ModeScores(mode="vector", ndcg_at_10=0.5, recall_at_10=0.5, mrr=0.5, queries=2)
    # q2 with "c" then "b": RR 1; recall 1; DCG = 1 + 3/log2(3), IDCG = 3 + 1/log2(3).
    both = score_mode("hybrid", {"q1": ["c", "a"], "q2": ["c", "b"]}, dataset)
    q2_ndcg = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert both.ndcg_at_10 == pytest.approx((1 / math.log2(3) + q2_ndcg) / 2)
    assert both.recall_at_10 == 1.0
    assert both.mrr == pytest.approx((1 / 2 + 1) / 2)


def test_score_mode_rejects_rankings_for_unknown_queries() -> None:
    with pytest.raises(ValueError, match="unknown query ids"):
        score_mode("vector", {"nope": ["a"]}, _tiny_dataset())


def test_format_report_is_an_aligned_table() -> None:
    report = format_report(
        [
            ModeScores("vector", 0.71234, 0.8, 0.75, 92),
            ModeScores("keyword", 0.5, 0.625, 0.6, 92),
            ModeScores("hybrid", 0.8, 0.9, 0.85, 92),
        ]
    )
    lines = report.strip().splitlines()
    assert lines[0].split("|")[1:-1] == [
        " mode    ",
        " nDCG@10 ",
        " recall@10 ",
        "   MRR ",
        " queries ",
    ]
    assert lines[1].startswith("|---")
    assert "| vector  |   0.712 |     0.800 | 0.750 |      92 |" in lines
    assert len({len(line) for line in lines}) == 1  # every line the same width


def test_format_sets_is_one_table_with_a_row_per_set_and_mode() -> None:
    report = format_sets(
        {
            "python-docs": [ModeScores("vector", 0.7, 0.8, 0.75, 92)],
            "man-pages": [ModeScores("hybrid", 0.5, 0.6, 0.55, 150)],
        }
    )
    lines = report.strip().splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == [
        "set",
        "mode",
        "nDCG@10",
        "recall@10",
        "MRR",
        "queries",
    ]
    assert lines[1].startswith("|-------------|--------|")
    assert "| python-docs | vector |   0.700 |     0.800 | 0.750 |      92 |" in lines
    assert "| man-pages   | hybrid |   0.500 |     0.600 | 0.550 |     150 |" in lines
    assert len({len(line) for line in lines}) == 1


@pytest.mark.parametrize(
    ("name", "language"),
    [
        ("python-docs", "english"),
        ("man-pages", "english"),
        ("rust-book", "english"),
        ("man-pages-de", "german"),
    ],
)
def test_every_shipped_set_loads_and_judges_every_query(name: str, language: str) -> None:
    dataset = load_dataset(ROOT / "eval" / "datasets" / name)
    assert len(dataset.queries) >= 90
    assert all(dataset.qrels[q.id] for q in dataset.queries)
    assert dataset.language == language


# -- loading ----------------------------------------------------------------------------------


def _write_dataset(
    root: Path,
    documents: list[str] | None = None,
    queries: list[str] | None = None,
    qrels: list[str] | None = None,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if documents is None:
        documents = [
            json.dumps({"id": "d1", "title": "One", "text": "first document"}),
            json.dumps({"id": "d2", "title": "Two", "text": "second document"}),
        ]
    if queries is None:
        queries = [
            json.dumps({"id": "q1", "query": "first?", "type": "semantic"}),
            json.dumps({"id": "q2", "query": "second?"}),
        ]
    if qrels is None:
        qrels = ["query_id\tdocument_id\trelevance", "q1\td1\t2", "q2\td2\t1", "q2\td1\t1"]
    for name, lines in (
        ("documents.jsonl", documents),
        ("queries.jsonl", queries),
        ("qrels.tsv", qrels),
    ):
        (root / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return root


def test_load_dataset_reads_a_valid_dataset(tmp_path: Path) -> None:
    dataset = load_dataset(_write_dataset(tmp_path))
    assert [d.id for d in dataset.documents] == ["d1", "d2"]
    assert dataset.documents[0] == EvalDocument(id="d1", title="One", text="first document")
    assert dataset.queries == [
        EvalQuery(id="q1", query="first?", kind="semantic"),
        EvalQuery(id="q2", query="second?", kind=None),
    ]
    assert dataset.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1, "d1": 1}}


def test_dataset_json_names_the_language(tmp_path: Path) -> None:
    root = _write_dataset(tmp_path)
    (root / "dataset.json").write_text('{"language": "french"}\n', encoding="utf-8")
    assert load_dataset(root).language == "french"
    for bad in ("{", '{"language": ""}', '["german"]', '{"language": 3}'):
        (root / "dataset.json").write_text(bad, encoding="utf-8")
        with pytest.raises(DatasetError, match=r"dataset\.json"):
            load_dataset(root)


def test_duplicate_document_id(tmp_path: Path) -> None:
    doc = json.dumps({"id": "d1", "title": "One", "text": "x"})
    path = _write_dataset(tmp_path, documents=[doc, doc])
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == (
        f"{path / 'documents.jsonl'}:2: duplicate document id 'd1' (first on line 1)"
    )


def test_duplicate_query_id(tmp_path: Path) -> None:
    query = json.dumps({"id": "q1", "query": "again"})
    path = _write_dataset(tmp_path, queries=[query, query])
    with pytest.raises(DatasetError, match=r"queries\.jsonl:2: duplicate query id 'q1'"):
        load_dataset(path)


def test_unknown_document_in_qrels(tmp_path: Path) -> None:
    path = _write_dataset(
        tmp_path, qrels=["query_id\tdocument_id\trelevance", "q1\td1\t1", "q2\tnope\t1"]
    )
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == f"{path / 'qrels.tsv'}:3: unknown document id 'nope'"


def test_unknown_query_in_qrels(tmp_path: Path) -> None:
    path = _write_dataset(tmp_path, qrels=["query_id\tdocument_id\trelevance", "q9\td1\t1"])
    with pytest.raises(DatasetError, match=r"qrels\.tsv:2: unknown query id 'q9'"):
        load_dataset(path)


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", "two", "", "+1"])
def test_bad_relevance(tmp_path: Path, bad: str) -> None:
    path = _write_dataset(
        tmp_path, qrels=["query_id\tdocument_id\trelevance", "q1\td1\t2", f"q2\td2\t{bad}"]
    )
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == (
        f"{path / 'qrels.tsv'}:3: relevance must be an integer >= 1, got {bad!r}"
    )


def test_duplicate_judgement(tmp_path: Path) -> None:
    path = _write_dataset(
        tmp_path,
        qrels=["query_id\tdocument_id\trelevance", "q1\td1\t1", "q2\td1\t1", "q1\td1\t2"],
    )
    with pytest.raises(DatasetError, match=r"qrels\.tsv:4: duplicate judgement for \('q1', 'd1'\)"):
        load_dataset(path)


def test_qrels_header_and_field_count(tmp_path: Path) -> None:
    path = _write_dataset(tmp_path / "a", qrels=["query\tdoc\trel", "q1\td1\t1"])
    with pytest.raises(DatasetError, match=r"qrels\.tsv:1: expected the header"):
        load_dataset(path)
    path = _write_dataset(tmp_path / "b", qrels=["query_id\tdocument_id\trelevance", "q1 d1 1"])
    with pytest.raises(DatasetError, match=r"qrels\.tsv:2: expected 3 tab-separated fields, got 1"):
        load_dataset(path)


def test_query_without_judgement(tmp_path: Path) -> None:
    path = _write_dataset(tmp_path, qrels=["query_id\tdocument_id\trelevance", "q1\td1\t1"])
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == f"{path / 'qrels.tsv'}: no relevant document judged for query 'q2'"


@pytest.mark.parametrize("name", ["documents.jsonl", "queries.jsonl", "qrels.tsv"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    path = _write_dataset(tmp_path)
    (path / name).unlink()
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == f"{path / name}: file not found"


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset(tmp_path / "nowhere")


def test_malformed_json_line(tmp_path: Path) -> None:
    good = json.dumps({"id": "d1", "title": "One", "text": "x"})
    path = _write_dataset(tmp_path, documents=[good, '{"id": "d2", "title": '])
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value).startswith(f"{path / 'documents.jsonl'}:2: invalid JSON: ")


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    good = json.dumps({"id": "d1", "title": "One", "text": "x"})
    path = _write_dataset(tmp_path, documents=[good, "", "[1, 2]"])
    with pytest.raises(DatasetError, match=r"documents\.jsonl:3: expected a JSON object"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"title": "T", "text": "x"}, "field 'id' missing"),
        ({"id": 7, "title": "T", "text": "x"}, "field 'id' not a string: 7"),
        ({"id": " ", "title": "T", "text": "x"}, "field 'id' is empty"),
        (
            {"id": "d3 ", "title": "T", "text": "x"},
            "field 'id' has surrounding whitespace or a tab: 'd3 '",
        ),
        ({"id": "d3", "text": "x"}, "field 'title' missing"),
        ({"id": "d3", "title": "T", "text": "  "}, "document 'd3' has an empty text"),
    ],
)
def test_bad_document_fields(tmp_path: Path, record: dict[str, object], message: str) -> None:
    good = json.dumps({"id": "d1", "title": "One", "text": "x"})
    path = _write_dataset(tmp_path, documents=[good, json.dumps(record)])
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == f"{path / 'documents.jsonl'}:2: {message}"


def test_bad_query_type_field(tmp_path: Path) -> None:
    path = _write_dataset(tmp_path, queries=[json.dumps({"id": "q1", "query": "x", "type": 3})])
    with pytest.raises(DatasetError, match=r"queries\.jsonl:1: field 'type' not a string: 3"):
        load_dataset(path)


# -- the shipped dataset ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def python_docs() -> Dataset:
    return load_dataset(PYTHON_DOCS)


def test_python_docs_counts(python_docs: Dataset) -> None:
    assert len(python_docs.documents) == 102
    assert len(python_docs.queries) == 92
    assert Counter(q.kind for q in python_docs.queries) == {
        "semantic": 38,
        "keyword": 28,
        "mixed": 26,
    }
    judgements = [r for judged in python_docs.qrels.values() for r in judged.values()]
    assert len(judgements) == 200
    assert Counter(judgements) == {2: 107, 1: 93}


def test_python_docs_ids_are_consistent(python_docs: Dataset) -> None:
    doc_ids = {d.id for d in python_docs.documents}
    query_ids = [q.id for q in python_docs.queries]
    assert len(doc_ids) == len(python_docs.documents)
    assert len(set(query_ids)) == len(query_ids)
    assert set(python_docs.qrels) == set(query_ids)
    for judged in python_docs.qrels.values():
        assert set(judged) <= doc_ids
        assert set(judged.values()) <= {1, 2}
    # Query ids carry their type: s.. semantic, k.. keyword, m.. mixed.
    prefixes = {"semantic": "s", "keyword": "k", "mixed": "m"}
    for query in python_docs.queries:
        assert query.kind in prefixes
        assert query.id.startswith(prefixes[query.kind])
    # Documents are non-trivial text, titles set.
    assert all(d.title and len(d.text.split()) >= 15 for d in python_docs.documents)


@pytest.mark.skipif(
    sys.version_info[:3] != (3, 11, 7),
    reason="documents.jsonl was built from CPython 3.11.7's pydoc_data",
)
def test_python_docs_documents_are_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("build_python_docs", BUILDER)
    assert spec is not None
    assert spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, builder)  # dataclasses look their module up
    spec.loader.exec_module(builder)
    rebuilt: str = builder.render(builder.build())
    assert rebuilt == (PYTHON_DOCS / "documents.jsonl").read_text(encoding="utf-8")
