"""Cold start and memory of mtai's processes: `mtai serve` and `mtai worker`.

Cold start: from Popen of `mtai serve --no-migrate` to the first 200 from /ping, with one and
two worker processes. Memory (VmRSS; PSS where smaps_rollup is readable) of the API's process
tree idle, once the local embedding model (all-MiniLM-L6-v2 on ONNX Runtime) is loaded in every
worker, and at its peak under a chat load; and of `mtai worker` (Redis queue) idle and while it
ingests documents uploaded through the API.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import fake_upstream
from bench.common import Json, load_corpus, table, target, wait_until_quiet
from bench.loadgen import ensure_wrk, run_wrk
from bench.servers import (
    MemorySampler,
    MtaiConfig,
    Provisioned,
    flush_redis,
    free_port,
    mtai_serving,
    provision,
    rss_mib,
    serve_command,
    start_mtai,
    stop_process,
    tail,
    tree_memory,
    wait_http,
    worker_pids,
)
from mtai.services.principal import Scope

TARGET_RSS_MIB = 400.0  # per API worker process, with the local embedding model loaded
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
MODEL_LOADED_MIB = 30.0  # a worker whose RSS grew this much since idle has loaded the model
INGEST_TIMEOUT = 600.0


@dataclass(frozen=True)
class ProcessOptions:
    cold_starts: int = 5  # measured starts per worker count (median and max reported)
    worker_counts: tuple[int, ...] = (1, 2)
    workers: int = 2  # the API's worker processes for the memory readings
    load_seconds: float = 20.0  # the chat load during which the peak is sampled
    connections: int = 32
    threads: int = 2
    latency_ms: float = 20.0  # the fake upstream's
    sample_interval: float = 0.2
    documents: int = 5  # uploaded for `mtai worker` to ingest
    quiet_timeout: float = 60.0


# --- cold start ----------------------------------------------------------------------------


def _cold_start(config: MtaiConfig, workers: int, log: Path) -> float:
    """Seconds from Popen to the first 200 from /ping; the server is stopped afterwards."""
    port = free_port()
    started = time.perf_counter()
    process = start_mtai(config, serve_command(port), workers, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", process, log, timeout=180, interval=0.005)
        return time.perf_counter() - started
    finally:
        stop_process(process)


async def cold_starts(config: MtaiConfig, options: ProcessOptions, work: Path) -> Json:
    # One start first, not counted: it bootstraps the platform (first admin) in the database.
    print("[bench] processes: first start (bootstrap, not counted)", flush=True)
    await asyncio.to_thread(_cold_start, config, 1, work / "cold-first.log")
    found: Json = {}
    for workers in options.worker_counts:
        runs = []
        for i in range(options.cold_starts):
            await asyncio.to_thread(wait_until_quiet, None, options.quiet_timeout)
            seconds = await asyncio.to_thread(
                _cold_start, config, workers, work / f"cold-{workers}-{i}.log"
            )
            print(
                f"[bench] processes: cold start, {workers} worker(s): {seconds:.2f} s", flush=True
            )
            runs.append(round(seconds, 3))
        found[str(workers)] = {
            "runs": runs,
            "p50_s": round(statistics.median(runs), 3),
            "max_s": round(max(runs), 3),
        }
    return found


# --- memory ----------------------------------------------------------------------------------


def _label(readings: list[Json]) -> list[Json]:
    """Roles numbered: parent, worker 1, worker 2, ..."""
    n = 0
    out = []
    for r in readings:
        name = r["role"]
        if name == "worker":
            n += 1
            name = f"worker {n}"
        out.append(r | {"name": name})
    return out


async def load_embedder(
    client: httpx.AsyncClient, root: int, idle: dict[int, float], attempts: int = 40
) -> Json:
    """POST /v1/embeddings on new connections, 8 at a time, until every worker's RSS has grown
    by MODEL_LOADED_MIB since idle (the model is loaded lazily, per process)."""
    sent = 0
    body = {"model": EMBEDDING_MODEL, "input": "How much memory does a worker need?"}
    for _ in range(attempts):
        responses = await asyncio.gather(
            *(client.post("/v1/embeddings", json=body) for _ in range(8))
        )
        sent += len(responses)
        for response in responses:
            response.raise_for_status()
        grown = {pid: (rss_mib(pid) or 0.0) - idle.get(pid, 0.0) for pid in worker_pids(root)}
        if all(g >= MODEL_LOADED_MIB for g in grown.values()):
            return {"requests": sent, "every_worker_loaded": True, "grown_mib": grown}
    return {"requests": sent, "every_worker_loaded": False, "grown_mib": grown}


async def ingest(client: httpx.AsyncClient, documents: int) -> Json:
    """Uploads `documents` of the python-docs corpus as JSON text; waits until each is ready."""
    corpus = load_corpus()
    step = max(1, len(corpus) // max(1, documents))
    chosen = corpus[::step][:documents]
    started = time.perf_counter()
    ids = []
    for doc in chosen:
        response = await client.post(
            "/api/v1/rag/documents", json={"text": doc.text, "title": doc.title}
        )
        response.raise_for_status()
        ids.append(uuid.UUID(response.json()["id"]))
    statuses: dict[uuid.UUID, Json] = {}
    deadline = time.monotonic() + INGEST_TIMEOUT
    while time.monotonic() < deadline:
        for doc_id in ids:
            if doc_id in statuses:
                continue
            got = (await client.get(f"/api/v1/rag/documents/{doc_id}")).json()
            if got["status"] in ("ready", "failed"):
                statuses[doc_id] = got
        if len(statuses) == len(ids):
            break
        await asyncio.sleep(0.2)
    return {
        "documents": len(ids),
        "ready": sum(1 for s in statuses.values() if s["status"] == "ready"),
        "failed": sum(1 for s in statuses.values() if s["status"] == "failed"),
        "chunks": sum(int(s["chunk_count"]) for s in statuses.values()),
        "bytes": sum(len(d.text.encode()) for d in chosen),
        "seconds": round(time.perf_counter() - started, 2),
    }


async def memory(
    config: MtaiConfig,
    provisioned: Provisioned,
    options: ProcessOptions,
    wrk: str,
    work: Path,
) -> Json:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {provisioned.api_key}"}
    found: Json = {}
    with mtai_serving(config, port, options.workers, work / "api.log") as server:
        await asyncio.sleep(3.0)
        idle = _label(tree_memory(server.pid))
        found["api_idle"] = idle
        print("[bench] processes: loading the embedding model in every worker", flush=True)
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=base, headers=headers, timeout=60, limits=no_reuse, trust_env=False
        ) as client:
            found["embedder"] = await load_embedder(
                client, server.pid, {r["pid"]: r["VmRSS"] for r in idle}
            )
        await asyncio.sleep(1.0)
        found["api_model_loaded"] = _label(tree_memory(server.pid))

        print(f"[bench] processes: chat load for {options.load_seconds:g} s", flush=True)
        await asyncio.to_thread(wait_until_quiet, None, options.quiet_timeout)
        body = {
            "model": provisioned.model,
            "messages": [{"role": "user", "content": "In one sentence: what is RSS?"}],
            "max_tokens": 64,
        }
        with MemorySampler(server.pid, options.sample_interval) as sampler:
            load = await asyncio.to_thread(
                run_wrk,
                wrk,
                f"{base}/v1/chat/completions",
                body,
                token=provisioned.api_key,
                expect='"usage"',
                connections=options.connections,
                threads=options.threads,
                seconds=options.load_seconds,
            )
        after = _label(tree_memory(server.pid))
        found["api_after_load"] = after
        found["api_peak_under_load"] = {
            "by_process": [
                {
                    "name": r["name"],
                    "pid": r["pid"],
                    "VmRSS": round(sampler.peak_by_pid.get(r["pid"], 0.0), 1),
                }
                for r in after
            ],
            "total": round(sampler.peak_total, 1),
            "samples": sampler.samples,
            "load": load.as_json(),
        }

        print("[bench] processes: mtai worker, idle and ingesting", flush=True)
        worker_log = work / "worker.log"
        worker = start_mtai(config, ["worker"], 1, worker_log)
        try:
            deadline = time.monotonic() + 120
            while "worker: jobs from" not in tail(worker_log, 50):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mtai worker did not start:\n{tail(worker_log)}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(3.0)
            found["worker_idle"] = _label(tree_memory(worker.pid))
            async with httpx.AsyncClient(
                base_url=base, headers=headers, timeout=60, trust_env=False
            ) as client:
                with MemorySampler(worker.pid, options.sample_interval) as sampled:
                    found["ingest"] = await ingest(client, options.documents)
            found["worker_peak_ingesting"] = {
                "VmRSS": round(sampled.peak_by_pid.get(worker.pid, 0.0), 1),
                "total": round(sampled.peak_total, 1),
                "samples": sampled.samples,
            }
            found["worker_after_ingest"] = _label(tree_memory(worker.pid))
        finally:
            stop_process(worker)
    return found


# --- the run -------------------------------------------------------------------------------


async def run(database_url: str, options: ProcessOptions) -> Json:
    wrk = ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="mtai-bench-processes-"))
    try:
        config = MtaiConfig(database_url, work / "mtai", queue_backend="redis")
        await flush_redis(config.redis_url)
        upstream_port = free_port()
        with fake_upstream.running(upstream_port, options.latency_ms, work / "upstream.log"):
            provisioned = await provision(
                config,
                upstream_port,
                [Scope.CHAT, Scope.RAG_READ, Scope.RAG_WRITE],
                "processes",
            )
            cold = await cold_starts(config, options, work)
            mem = await memory(config, provisioned, options, wrk, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summarize(options, cold, mem)


def _mib(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _rows(state: str, readings: list[Json]) -> list[list[str]]:
    rows = [
        [state, r["name"], _mib(r.get("VmRSS")), _mib(r.get("Pss")), _mib(r.get("RssAnon"))]
        for r in readings
    ]
    pss = [r.get("Pss") for r in readings]
    rows.append(
        [
            state,
            "total",
            _mib(sum(r.get("VmRSS") or 0.0 for r in readings)),
            _mib(sum(p for p in pss if p is not None)) if all(p is not None for p in pss) else "",
            _mib(sum(r.get("RssAnon") or 0.0 for r in readings)),
        ]
    )
    return rows


def summarize(options: ProcessOptions, cold: Json, mem: Json) -> Json:
    cold_rows = [
        [
            workers,
            len(c["runs"]),
            f"{c['p50_s']:.2f}",
            f"{c['max_s']:.2f}",
            ", ".join(f"{s:.2f}" for s in c["runs"]),
        ]
        for workers, c in cold.items()
    ]
    memory_rows = (
        _rows("idle after start", mem["api_idle"])
        + _rows("embedding model loaded", mem["api_model_loaded"])
        + [
            ["peak under chat load", p["name"], _mib(p["VmRSS"]), "", ""]
            for p in mem["api_peak_under_load"]["by_process"]
        ]
        + [
            [
                "peak under chat load",
                "total (same instant)",
                _mib(mem["api_peak_under_load"]["total"]),
                "",
                "",
            ]
        ]
        + _rows("after the load", mem["api_after_load"])
    )
    worker_peak = mem["worker_peak_ingesting"]["VmRSS"]
    worker_rows = [
        *_rows("idle after start", mem["worker_idle"]),
        ["peak while ingesting", "worker", _mib(worker_peak), "", ""],
        *_rows("after ingesting", mem["worker_after_ingest"]),
    ]
    workers_loaded = [r for r in mem["api_model_loaded"] if r["role"] == "worker"] or [
        r for r in mem["api_model_loaded"] if r["role"] == "parent"
    ]
    peaks = [
        p for p in mem["api_peak_under_load"]["by_process"] if p["name"].startswith("worker")
    ] or mem["api_peak_under_load"]["by_process"][:1]
    worst_loaded = max(r["VmRSS"] for r in workers_loaded)
    worst_peak = max(p["VmRSS"] for p in peaks)
    load = mem["api_peak_under_load"]["load"]
    ingest = mem["ingest"]
    targets = [
        target(
            "API worker process RSS, embedding model loaded (largest worker)",
            f"< {TARGET_RSS_MIB:.0f} MB (read as MiB)",
            f"{worst_loaded:.0f} MiB ("
            + ", ".join(f"{r['name']}: {r['VmRSS']:.0f}" for r in workers_loaded)
            + ")",
            worst_loaded < TARGET_RSS_MIB and mem["embedder"]["every_worker_loaded"],
        ),
        target(
            "API worker process RSS, model loaded, peak under chat load (largest worker)",
            f"< {TARGET_RSS_MIB:.0f} MB (read as MiB)",
            f"{worst_peak:.0f} MiB ("
            + ", ".join(f"{p['name']}: {p['VmRSS']:.0f}" for p in peaks)
            + ")",
            worst_peak < TARGET_RSS_MIB,
        ),
    ]
    embedder = mem["embedder"]
    return {
        "title": "Processes: cold start and memory",
        "method": [
            "`mtai serve --no-migrate` and `mtai worker` as subprocesses, configured as in "
            "production: MTAI_ENV=production with generated secrets, the benchmark's migrated "
            "PostgreSQL database, Redis (database 7, flushed first) for limits and the ingestion "
            "queue (MTAI_QUEUE_BACKEND=redis), MTAI_LOG_LEVEL=WARNING.",
            f"Cold start: from `Popen` to the first 200 from `GET /ping` (polled every 5 ms on a "
            f"new connection), {options.cold_starts} starts per worker count "
            f"(MTAI_WORKERS={', '.join(map(str, options.worker_counts))}), each after waiting "
            "for a quiet machine, the server stopped (SIGTERM) between them. One start before "
            "them is not counted: it bootstraps the platform in the fresh database. The files "
            "are in the page cache by then (warm start). With several workers, the first 200 "
            "comes from whichever worker is up first.",
            f"Memory: MTAI_WORKERS={options.workers}. VmRSS from /proc/<pid>/status, PSS "
            "(proportional set size: shared pages divided among the processes sharing them) "
            "and anonymous RSS from /proc/<pid>/smaps_rollup and status, in MiB, of every "
            "process of the tree (uvicorn's parent, its spawned workers, multiprocessing's "
            "resource tracker). Idle: 3 s after the API answered. Model loaded: `POST "
            f"/v1/embeddings` ({EMBEDDING_MODEL}, loaded lazily in each process) sent 8 at a "
            "time on new connections until every worker's RSS had grown by "
            f"{MODEL_LOADED_MIB:.0f} MiB ({embedder['requests']} requests; every worker "
            f"loaded: {'yes' if embedder['every_worker_loaded'] else 'NO'}). Peak: RSS sampled "
            f"every {options.sample_interval:g} s during {options.load_seconds:g} s of wrk "
            f"({options.connections} connections) on `POST /v1/chat/completions` to a fake "
            f"upstream ({options.latency_ms:g} ms): {load['requests']} requests, "
            f"{load['rps']:.0f} req/s, {sum(load['errors'].values())} errors.",
            f"`mtai worker`: idle 3 s after it reported ready; peak sampled every "
            f"{options.sample_interval:g} s while it ingested {ingest['documents']} documents of "
            f"the python-docs corpus ({ingest['bytes'] / 1024:.0f} KiB, {ingest['chunks']} "
            f"chunks, {ingest['ready']} ready, {ingest['failed']} failed, "
            f"{ingest['seconds']:.1f} s) uploaded through `POST /api/v1/rag/documents`.",
        ],
        "tables": [
            table(
                "Cold start of `mtai serve` (Popen to the first 200 from /ping, seconds)",
                ["workers", "starts", "p50", "max", "each"],
                cold_rows,
            ),
            table(
                f"API process tree memory (MTAI_WORKERS={options.workers}; MiB)",
                ["state", "process", "RSS", "PSS", "anonymous RSS"],
                memory_rows,
                "Each worker is a spawned interpreter (not forked): it loads its own copy of "
                "every module and of the model, so little besides shared libraries is shared "
                "and RSS adds up nearly as PSS does.",
            ),
            table(
                "`mtai worker` memory (MiB)",
                ["state", "process", "RSS", "PSS", "anonymous RSS"],
                worker_rows,
            ),
        ],
        "targets": targets,
        "data": {
            "options": {k: getattr(options, k) for k in options.__dataclass_fields__},
            "cold_start": cold,
            "memory": mem,
        },
    }
