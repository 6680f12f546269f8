"""The retrieval evaluation: the shipped set through the real pipeline, and the CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mtai.config import Settings
from mtai.rag.evaluation import format_report, load_dataset
from mtai.runtime import Runtime
from mtai.services import retrieval_eval
from tests.conftest import deployment_env

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "eval-tiny"


# Hybrid's nDCG@10 must beat the better of its parts by this much (issue 17's target).
MARGIN = 0.01


@pytest.mark.parametrize(
    "name",
    [
        "python-docs",  # the tuning set
        "rust-book",  # held out: no parameter was chosen on it, and keyword beats vector on it
    ],
)
async def test_hybrid_beats_vector_and_keyword(runtime: Runtime, name: str) -> None:
    dataset = load_dataset(ROOT / "eval" / "datasets" / name)
    scores = {
        s.mode: s
        for s in await retrieval_eval.evaluate(
            dataset,
            tenants=runtime.tenants,
            knowledge_bases=runtime.knowledge_bases,
            documents=runtime.documents,
            ingestor=runtime.ingestor,
            retriever=runtime.retriever,
        )
    }
    print("\n" + format_report(list(scores.values())))
    hybrid = scores["hybrid"]
    for other in (scores["vector"], scores["keyword"]):
        assert hybrid.ndcg_at_10 >= other.ndcg_at_10 + MARGIN, scores
        assert hybrid.mrr > other.mrr, scores
        assert hybrid.recall_at_10 >= other.recall_at_10, scores


async def test_the_german_set_searched_in_german_beats_it_searched_in_english(
    runtime: Runtime,
) -> None:
    """The non-English set: its knowledge base in German (as dataset.json says) against the
    same documents parsed as English, keyword search and hybrid; and embedded by the
    multilingual model instead of the English one (measured: vector 0.751 against 0.478,
    hybrid 0.748 against 0.577)."""
    german = load_dataset(ROOT / "eval" / "datasets" / "man-pages-de")
    assert german.language == "german"
    scores = {}
    for label, model, languages in (
        # The same chunks parsed as English afterwards: embedded once, searched twice.
        ("german", None, ("english",)),
        ("multilingual", "multilingual-e5-small", ()),
    ):
        found = await retrieval_eval.evaluate(
            german,
            tenants=runtime.tenants,
            knowledge_bases=runtime.knowledge_bases,
            documents=runtime.documents,
            ingestor=runtime.ingestor,
            retriever=runtime.retriever,
            embedding_model=model,
            languages=languages,
        )
        scores[label] = {s.mode: s.ndcg_at_10 for s in found}
    scores["english"] = {
        mode: scores["german"][f"{mode} in english"] for mode in ("keyword", "hybrid")
    }
    print(scores)
    assert scores["german"]["keyword"] >= scores["english"]["keyword"] + 0.02, scores
    assert scores["german"]["hybrid"] > scores["english"]["hybrid"], scores
    assert scores["multilingual"]["vector"] >= scores["german"]["vector"] + 0.15, scores
    assert scores["multilingual"]["hybrid"] >= scores["german"]["hybrid"] + 0.1, scores


def eval_cli(settings: Settings, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`mtai eval retrieval ARGS...` against the test deployment."""
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "mtai"), "eval", "retrieval", *args],
        env=deployment_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_cli_prints_one_table_for_several_sets_and_cleans_up(
    settings: Settings, tmp_path: Path
) -> None:
    second = tmp_path / "eval-tiny-again"
    shutil.copytree(TINY, second)
    result = eval_cli(
        settings,
        *(str(TINY), str(second), "--fusion", "rrf:1:1", "--fusion", "convex:1:0"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert [c.strip() for c in lines[0].split("|")[1:3]] == ["set", "mode"], result.stdout
    cells = {
        (line.split("|")[1].strip(), line.split("|")[2].strip()): line.split("|")[3:]
        for line in lines[2:]
    }
    modes = ("vector", "keyword", "hybrid", "hybrid rrf 1:1", "hybrid convex 1:0")
    assert set(cells) == {(n, m) for n in ("eval-tiny", "eval-tiny-again") for m in modes}
    # The offline fusion of the two lists reproduces the product's hybrid search.
    assert cells[("eval-tiny", "hybrid rrf 1:1")] == cells[("eval-tiny", "hybrid")]
    # Every mode finds the one relevant document first on this easy set.
    assert all(line.split("|")[5].strip() == "1.000" for line in lines[2:]), result.stdout


def test_a_fusion_it_cannot_use_is_refused_before_any_work(settings: Settings) -> None:
    result = eval_cli(settings, str(TINY), "--fusion", "rrf:0:0", timeout=120)
    assert result.returncode == 1
    assert "not both 0" in result.stderr, result.stderr


def test_a_broken_dataset_is_refused_with_the_reason(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "documents.jsonl").write_text('{"id": "a", "title": "A", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"id": "q", "query": "x"}\n')
    (tmp_path / "qrels.tsv").write_text("query_id\tdocument_id\trelevance\nq\tmissing\t1\n")
    result = eval_cli(settings, str(tmp_path), timeout=120)
    assert result.returncode == 1
    assert "qrels.tsv" in result.stderr, result.stderr
    assert "missing" in result.stderr, result.stderr
