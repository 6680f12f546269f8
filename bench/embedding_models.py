"""Speed and memory of the local embedding models, on the passages of every evaluation set.

Each set's documents are chunked as ingestion chunks them for each model (its own tokeniser,
its passage prefix, the platform's chunk size), and the model embeds 300 of them, evenly
spaced, in batches of its batch size, as the ingestor feeds it. Every measurement runs in a
fresh process (so its memory is the model's own), models alternating A B A B; passages/s is
the better of the rounds. Quality is `mtai eval retrieval --embedding-model` (docs/rag.md).
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, Json, table, target
from mtai.config import Settings
from mtai.providers.embeddings.minilm_onnx import OnnxMiniLMEmbedder
from mtai.providers.embeddings.multilingual_e5 import MultilingualE5Embedder
from mtai.rag.chunking import chunk_document
from mtai.rag.evaluation import load_dataset
from mtai.rag.parsing import parse
from mtai.services.ingestion import with_title

MODELS = {e.name: e for e in (OnnxMiniLMEmbedder, MultilingualE5Embedder)}
BASELINE = OnnxMiniLMEmbedder.name
SETS = ("python-docs", "man-pages", "rust-book", "man-pages-de")
DATASETS = ROOT / "eval" / "datasets"
ROUNDS = 2
PASSAGES_PER_SET = 300  # evenly spaced over the set's passages: a round takes minutes, not tens
# The bar for a new default: at least half the speed of all-MiniLM-L6-v2.
SPEED_BAR = 0.5


def _vm_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(model: str, sets: list[str]) -> Json:
    """In this process: chunk and embed every set with `model`; seconds and memory."""
    embedder = MODELS[model]()
    settings = Settings(_env_file=None)
    max_tokens = min(settings.chunk_tokens, embedder.max_tokens)
    overlap = min(settings.chunk_overlap_tokens, max_tokens // 2)
    before = _vm_rss_mib()
    embedder.embed([embedder.passage_prefix + "warm up"])  # loads the model; not timed
    loaded = _vm_rss_mib()
    result: Json = {"model": model, "rss_before_mib": round(before, 1), "sets": {}}
    for name in sets:
        dataset = load_dataset(DATASETS / name)
        passages = []
        for doc in dataset.documents:
            parsed = with_title(
                parse(doc.text.encode(), filename=None, content_type="text/plain"), doc.title
            )
            chunks = chunk_document(
                parsed,
                lambda text: embedder.count_tokens(embedder.passage_prefix + text),
                max_tokens=max_tokens,
                overlap_tokens=overlap,
            )
            passages += [embedder.passage_prefix + c.embedding_text for c in chunks]
        step = max(1, len(passages) // PASSAGES_PER_SET)
        passages = passages[::step][:PASSAGES_PER_SET]
        started = time.perf_counter()
        for start in range(0, len(passages), embedder.batch_size):
            embedder.embed(passages[start : start + embedder.batch_size])
        seconds = time.perf_counter() - started
        result["sets"][name] = {"passages": len(passages), "seconds": round(seconds, 2)}
    result["rss_loaded_mib"] = round(loaded, 1)
    result["rss_peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def _in_process(model: str, sets: list[str]) -> Json:
    done = subprocess.run(  # noqa: S603  # our own interpreter and module
        [sys.executable, "-m", "bench.embedding_models", model, *sets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    measured: Json = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def _rate(run: Json, name: str) -> float:
    measured = run["sets"][name]
    return float(measured["passages"] / measured["seconds"])


async def run(_database_url: str, sets: tuple[str, ...] = SETS) -> Json:
    rounds: dict[str, list[Json]] = {m: [] for m in MODELS}
    for _ in range(ROUNDS):
        for model in MODELS:
            print(f"[bench] embedding_models: {model}", flush=True)
            rounds[model].append(await asyncio.to_thread(_in_process, model, list(sets)))
    best = {m: {s: max(_rate(r, s) for r in runs) for s in sets} for m, runs in rounds.items()}
    rows = []
    for model, runs in rounds.items():
        last = runs[-1]
        total = sum(last["sets"][s]["passages"] for s in sets)
        rows.append(
            [model]
            + [f"{best[model][s]:.1f}" for s in sets]
            + [
                f"{min(best[model][s] / best[BASELINE][s] for s in sets):.2f}",
                f"{max(r['rss_loaded_mib'] - r['rss_before_mib'] for r in runs):.0f}",
                f"{max(r['rss_peak_mib'] for r in runs):.0f}",
                str(total),
            ]
        )
    slowest = {
        m: min(best[m][s] / best[BASELINE][s] for s in sets) for m in MODELS if m != BASELINE
    }
    return {
        "title": "Local embedding models: passages per second and memory",
        "method": [" ".join(p.split()) for p in (__doc__ or "").split("\n\n")[1:]],
        "rounds": rounds,
        "tables": [
            table(
                "Passages embedded per second (best of the rounds), speed relative to "
                f"{BASELINE} (the lowest over the sets), memory in MiB",
                [
                    "model",
                    *sets,
                    "speed vs MiniLM",
                    "RSS added by the model",
                    "peak RSS",
                    "passages",
                ],
                rows,
            )
        ],
        "targets": [
            target(
                f"{model}: at least {SPEED_BAR:g}x the passages/s of {BASELINE} on every set "
                "(the bar for a new default)",
                f">= {SPEED_BAR:g}",
                f"{ratio:.2f}",
                ratio >= SPEED_BAR,
            )
            for model, ratio in slowest.items()
        ],
    }


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2:])))
