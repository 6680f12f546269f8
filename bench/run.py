"""Run the benchmarks and write bench/results/<suite>.json and docs/benchmarks.md.

    python -m bench.run                       # everything (what `make bench` runs)
    python -m bench.run --only rag_search     # one benchmark; the others' results are kept
    python -m bench.run --quick               # small sizes: a smoke test of the harness
    python -m bench.run --only gateway --baseline ../mtai-before   # before/after, one run

A benchmark is a module with `async def run(database_url, options) -> dict` returning its
title, method, tables and targets (see bench/report.py); register it in BENCHMARKS. Each
one gets a freshly migrated database of its own on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bench import embedding_models, gateway, processes, rag_ingest, rag_search, report
from bench.common import (
    ROOT,
    CpuMeter,
    Json,
    database_server,
    machine,
    migrated_database,
    wait_until_quiet,
)
from mtai.logging import configure_logging

RESULTS_DIR = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class RunOptions:
    quick: bool = False  # small sizes: a smoke test of the harness
    baseline: Path | None = None  # gateway: another checkout measured side by side
    rounds: int | None = None  # gateway: paired rounds (default 1, or 3 with a baseline)


@dataclass(frozen=True)
class Benchmark:
    suite: str  # the results file it goes to: bench/results/<suite>.json
    run: Callable[[str, RunOptions], Awaitable[Json]]  # (database_url, options) -> result


async def _rag_ingest(url: str, run: RunOptions) -> Json:
    options = rag_ingest.IngestOptions(documents=12) if run.quick else rag_ingest.IngestOptions()
    return await rag_ingest.run(url, options)


async def _rag_search(url: str, run: RunOptions) -> Json:
    options = (
        rag_search.SearchOptions(sizes=(2_000, 5_000), queries=40, warmup=5, recall_queries=20)
        if run.quick
        else rag_search.SearchOptions()
    )
    return await rag_search.run(url, options)


async def _gateway(url: str, run: RunOptions) -> Json:
    options = (
        gateway.GatewayOptions(seconds=5, warmup_seconds=2, quiet_timeout=10)
        if run.quick
        else gateway.GatewayOptions()
    )
    rounds = run.rounds or (3 if run.baseline else 1)
    return await gateway.run(url, replace(options, baseline=run.baseline, rounds=rounds))


async def _processes(url: str, run: RunOptions) -> Json:
    options = (
        processes.ProcessOptions(cold_starts=2, load_seconds=5, documents=2, quiet_timeout=10)
        if run.quick
        else processes.ProcessOptions()
    )
    return await processes.run(url, options)


async def _embedding_models(url: str, run: RunOptions) -> Json:
    sets = embedding_models.SETS[:1] if run.quick else embedding_models.SETS
    return await embedding_models.run(url, sets)


BENCHMARKS: dict[str, Benchmark] = {
    "rag_ingest": Benchmark("rag", _rag_ingest),
    "embedding_models": Benchmark("rag", _embedding_models),
    "rag_search": Benchmark("rag", _rag_search),
    "gateway": Benchmark("gateway", _gateway),
    "processes": Benchmark("processes", _processes),
}


def _load(path: Path) -> Json:
    if path.exists():
        loaded: Json = json.loads(path.read_text())
        return loaded
    return {}


def _write(path: Path, suite: Json) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(suite, indent=2) + "\n")


async def _main(
    names: list[str], options: RunOptions, results_dir: Path, quiet_timeout: float
) -> dict[str, Json]:
    suites: dict[str, Json] = {}
    with database_server() as server:
        described = await machine(server.admin_url)
        for name in names:
            benchmark = BENCHMARKS[name]
            before = await asyncio.to_thread(wait_until_quiet, server.postmaster_pid, quiet_timeout)
            meter = CpuMeter(server.postmaster_pid)
            meter.start()
            started = time.perf_counter()
            async with migrated_database(server.admin_url) as url:
                result = await benchmark.run(url, options)
            result["seconds"] = round(time.perf_counter() - started, 1)
            result["cpu"] = meter.stop() | {"foreign_cpu_share_before": before["foreign_cpu_share"]}
            result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            result["quick"] = options.quick
            result["mtai_commit"] = described.get("mtai_commit")
            result["command"] = "python -m bench.run " + shlex.join(sys.argv[1:])
            print(f"[bench] {name}: done in {result['seconds']} s", flush=True)
            path = results_dir / f"{benchmark.suite}.json"
            suite = suites.setdefault(benchmark.suite, _load(path))
            suite["suite"] = benchmark.suite
            suite["machine"] = described
            suite["command"] = "python -m bench.run " + shlex.join(sys.argv[1:])
            suite.setdefault("benchmarks", {})[name] = result
            # Written after each benchmark, so a later failure loses nothing measured.
            await asyncio.to_thread(_write, path, suite)
    return suites


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        help="run only this benchmark (repeatable); default: all",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--docs", type=Path, default=DOCS, help="markdown report to write")
    parser.add_argument("--no-docs", action="store_true", help="do not write the report")
    parser.add_argument(
        "--quiet-timeout",
        type=float,
        default=60.0,
        help="seconds to wait, before each benchmark, for other work on the machine to stop",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="gateway: another mtai checkout (an earlier commit, with its .venv) to measure "
        "side by side with this one",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="gateway: measured runs of each mtai per mode, alternating (default 1; 3 with "
        "--baseline)",
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    configure_logging("WARNING")
    names = args.only or list(BENCHMARKS)
    started = time.perf_counter()
    options = RunOptions(args.quick, args.baseline, args.rounds)
    asyncio.run(_main(names, options, args.results, args.quiet_timeout))
    if not args.no_docs:
        report.write(args.results, args.docs)
        print(f"[bench] wrote {args.docs}", flush=True)
    print(f"[bench] total {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
