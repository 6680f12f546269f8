"""Gateway overhead: the same wrk load straight to a fake upstream, through mtai, through LiteLLM.

A fake OpenAI-compatible upstream (bench/fake_upstream.py, its own process, fixed latency)
answers chat completions. The same closed-loop load (wrk, fixed connections and duration) is
sent (a) straight to it, (b) through mtai's `POST /v1/chat/completions` with a real API key,
tenant limits on (rate, tokens, concurrency and monthly budgets: every request is checked,
reserved and settled), and the usage ledger, against real PostgreSQL and Redis, and (c) through
LiteLLM's proxy (no database, master key) to the same upstream; non-streaming, then streaming.
The gateways' added latency is their percentile minus the direct one.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench import fake_upstream
from bench.common import Json, owner_connection, table, target, wait_until_quiet
from bench.litellm_env import LITELLM_VERSION, ensure_litellm
from bench.loadgen import WrkResult, ensure_wrk, run_wrk
from bench.servers import (
    GENEROUS_LIMITS,
    MODEL,
    UPSTREAM_MODEL,
    MtaiConfig,
    Provisioned,
    cpu_seconds,
    flush_redis,
    free_port,
    mtai_serving,
    process_tree,
    provision,
    spawn,
    stop_process,
    wait_for_workers,
    wait_http,
)
from mtai.services.principal import Scope

MODES = ("non-streaming", "streaming")
TARGET_LATENCY_RATIO = 1 / 3  # mtai's added p50 and p99 at most this share of LiteLLM's
TARGET_THROUGHPUT_RATIO = 2.0  # mtai's throughput at least this multiple of LiteLLM's
TARGET_BASELINE_TOLERANCE = 0.05  # against a baseline commit: at most this much worse
PROMPT = "In one sentence: why do gateways add latency?"
MAX_TOKENS = 64
LEDGER_SETTLE_SECONDS = 20.0
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class GatewayOptions:
    latency_ms: float = 20.0  # the fake upstream's, per completion
    connections: int = 32
    threads: int = 2  # wrk's
    seconds: float = 20.0  # each measured run
    warmup_seconds: float = 5.0  # each target and mode first gets a discarded run this long
    workers: int = 2  # mtai's and LiteLLM's worker processes: one per core here
    litellm: bool = True
    quiet_timeout: float = 60.0  # before each run: wait this long at most for a quiet machine
    # Another checkout of mtai (an earlier commit, its own .venv) measured in the same run,
    # alternating with this one round by round: the before/after of a change on one machine.
    baseline: Path | None = None
    rounds: int = 1  # measured runs of each mtai per mode; the median run is reported


def request_body(stream: bool) -> Json:
    body: Json = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


# --- other processes' CPU --------------------------------------------------------------------


def _machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    steal = values[7] if len(values) > 7 else 0
    guest = sum(values[8:10]) if len(values) > 9 else 0
    return (sum(values) - idle - steal - guest) / _TICKS


def _find_pids(match: str) -> list[int]:
    """Processes whose command line contains `match` (read from /proc; nothing is signalled)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if match in line:
                found.append(int(entry.name))
    return found


def postgres_pids(database_url: str) -> list[int]:
    """The PostgreSQL server holding the benchmark's database, if it runs on this machine:
    the postmaster started with `-p <port>`, and its backends."""
    port = make_url(database_url).port or 5432
    roots = [p for p in _find_pids(f"-p {port}") if "postgres" in _comm(p)]
    return sorted({pid for root in roots for pid in process_tree(root)})


def redis_pids() -> list[int]:
    return [p for p in _find_pids(":6379") if _comm(p).startswith("redis-server")]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class CpuSplit:
    """CPU time of the parts of one run, in cores (CPU seconds per wall second)."""

    gateway_root: int | None
    upstream_pid: int
    database_url: str

    def _groups(self) -> dict[str, list[int]]:
        return {
            "gateway": process_tree(self.gateway_root) if self.gateway_root else [],
            "upstream": [self.upstream_pid],
            "postgres": postgres_pids(self.database_url),
            "redis": redis_pids(),
        }

    def start(self) -> None:
        self._start = {
            group: {pid: cpu_seconds([pid]) for pid in pids}
            for group, pids in self._groups().items()
        }
        self._busy = _machine_busy_seconds()
        self._wall = time.perf_counter()

    def stop(self, wrk_cpu: float) -> Json:
        wall = time.perf_counter() - self._wall
        busy = _machine_busy_seconds() - self._busy
        # Processes that started during the run count whole; those that ended are lost.
        used = {
            group: sum(max(0.0, cpu_seconds([p]) - self._start[group].get(p, 0.0)) for p in pids)
            for group, pids in self._groups().items()
        }
        cores: Json = {k: round(v / wall, 2) for k, v in used.items()}
        cores["wrk"] = round(wrk_cpu / wall, 2)
        cores["other"] = round(max(0.0, busy - sum(used.values()) - wrk_cpu) / wall, 2)
        cores["machine"] = round(busy / wall, 2)
        return cores


# --- one measurement -------------------------------------------------------------------------


async def _quiet(limit: float) -> float:
    seen = await asyncio.to_thread(wait_until_quiet, None, limit)
    share: float = seen["foreign_cpu_share"]
    return share


async def _wrk(
    wrk: str, url: str, token: str | None, stream: bool, o: GatewayOptions, s: float
) -> WrkResult:
    return await asyncio.to_thread(
        run_wrk,
        wrk,
        url,
        request_body(stream),
        token=token,
        expect="[DONE]" if stream else '"usage"',
        connections=o.connections,
        threads=o.threads,
        seconds=s,
    )


async def measure(
    wrk: str,
    url: str,
    token: str | None,
    stream: bool,
    options: GatewayOptions,
    cpu: CpuSplit,
) -> Json:
    """Wait for a quiet machine, warm up (discarded), then the measured run."""
    quiet = await _quiet(options.quiet_timeout)
    warmup = await _wrk(wrk, url, token, stream, options, options.warmup_seconds)
    await asyncio.sleep(0.5)
    cpu.start()
    result = await _wrk(wrk, url, token, stream, options, options.seconds)
    cores = cpu.stop(result.wrk_cpu_seconds)
    return result.as_json() | {
        "warmup": warmup.as_json(),
        "cores": cores,
        "foreign_cpu_share_before": quiet,
    }


# --- mtai's ledger -----------------------------------------------------------------------------


async def ledger_counts(database_url: str, tenant_id: Any) -> dict[str, int]:
    conn = await owner_connection(database_url)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM usage_events WHERE tenant_id = $1 GROUP BY status",
            tenant_id,
        )
    finally:
        await conn.close()
    return {r["status"]: int(r["n"]) for r in rows}


async def settled_counts(database_url: str, tenant_id: Any, expected: int) -> dict[str, int]:
    """The ledger once it stops growing (the API spools records and flushes them every second)."""
    deadline = time.monotonic() + LEDGER_SETTLE_SECONDS
    last: dict[str, int] = {}
    stable = 0
    while time.monotonic() < deadline:
        counts = await ledger_counts(database_url, tenant_id)
        stable = stable + 1 if counts == last else 0
        last = counts
        if sum(counts.values()) >= expected and stable >= 2:
            break
        await asyncio.sleep(1.0)
    return last


# --- LiteLLM -----------------------------------------------------------------------------------


@contextmanager
def litellm_serving(
    executable: Path, upstream_port: int, port: int, workers: int, work: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """LiteLLM's proxy on 127.0.0.1:port: no database (no DATABASE_URL), a master key, the
    model routed to the fake upstream, no callbacks, local model cost map (offline)."""
    master_key = "sk-bench-" + secrets.token_urlsafe(24)
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{UPSTREAM_MODEL}",
                    "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                    "api_key": "sk-fake-upstream",
                },
            }
        ],
        "litellm_settings": {
            "telemetry": False,
            "success_callback": [],
            "failure_callback": [],
            "callbacks": [],
        },
        "general_settings": {"master_key": master_key},
    }
    config_path = work / "litellm.yaml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE")
    env = {k: v for k, v in os.environ.items() if k in keep} | {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "PYTHONUNBUFFERED": "1",
    }
    log = work / "litellm.log"
    process = spawn(
        [
            *(str(executable), "--config", str(config_path), "--host", "127.0.0.1"),
            *("--port", str(port), "--num_workers", str(workers)),
        ],
        log,
        work,
        env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", process, log, timeout=180)
        wait_for_workers(process.pid, workers, timeout=120)
        yield process, master_key
    finally:
        stop_process(process)


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """An mtai server of the run, and the tenant whose key its load uses."""

    process: subprocess.Popen[bytes]
    url: str
    tenant: Provisioned


def baseline_commit(checkout: Path) -> str:
    out = subprocess.run(  # noqa: S603  # git with fixed arguments
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def baseline_python(checkout: Path) -> str:
    python = checkout / ".venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(
            f"{checkout} has no .venv: run `make -C {checkout} .venv/.installed-run` first"
        )
    return str(python)


async def serve_mtai(
    stack: ExitStack, config: MtaiConfig, upstream_port: int, label: str, workers: int, python: str
) -> Served:
    """An `mtai serve` of `python`'s checkout with a tenant of its own (so each one's ledger
    can be counted), against the benchmark's database and Redis."""
    tenant = await provision(config, upstream_port, [Scope.CHAT], label)
    port = free_port()
    log = config.data_dir.parent / f"{label}.log"
    process = stack.enter_context(mtai_serving(config, port, workers, log, python=python))
    return Served(process, f"http://127.0.0.1:{port}/v1/chat/completions", tenant)


def median_run(runs: list[Json]) -> Json:
    """The round with the median throughput (the lower one of an even count), whole, so its
    latencies and CPU belong together."""
    ordered = sorted(runs, key=lambda r: float(r["rps"]))
    return ordered[(len(ordered) - 1) // 2] | {"rounds": len(runs)}


async def run(database_url: str, options: GatewayOptions) -> Json:
    wrk = ensure_wrk()
    litellm = ensure_litellm() if options.litellm else None
    commit = baseline_commit(options.baseline) if options.baseline else None
    work = Path(tempfile.mkdtemp(prefix="mtai-bench-gateway-"))
    results: dict[str, dict[str, Json]] = {mode: {} for mode in MODES}
    rounds: dict[str, dict[str, list[Json]]] = {}
    ledger: dict[str, Json] = {}
    try:
        upstream_port = free_port()
        with fake_upstream.running(
            upstream_port, options.latency_ms, work / "upstream.log"
        ) as upstream:
            direct_url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
            cpu = CpuSplit(None, upstream.pid, database_url)
            for mode in MODES:
                print(f"[bench] gateway: direct, {mode}", flush=True)
                results[mode]["direct"] = await measure(
                    wrk, direct_url, None, mode == "streaming", options, cpu
                )

            config = MtaiConfig(database_url, work / "mtai")
            await flush_redis(config.redis_url)
            with ExitStack() as stack:
                served: dict[str, Served] = {}
                if options.baseline is not None:
                    # The same secrets, database and Redis: only the code differs.
                    served["baseline"] = await serve_mtai(
                        stack,
                        replace(config, data_dir=work / "baseline"),
                        upstream_port,
                        "gateway-baseline",
                        options.workers,
                        baseline_python(options.baseline),
                    )
                served["mtai"] = await serve_mtai(
                    stack, config, upstream_port, "gateway", options.workers, sys.executable
                )
                for mode in MODES:
                    tenant = served["mtai"].tenant.tenant_id
                    before = sum((await ledger_counts(database_url, tenant)).values())
                    runs: dict[str, list[Json]] = {name: [] for name in served}
                    for index in range(options.rounds):
                        # A B, B A, ...: neither is always the one that runs on a warmer machine.
                        order = list(served.items())
                        for name, server in order if index % 2 == 0 else order[::-1]:
                            print(f"[bench] gateway: {name}, {mode}, round {index + 1}", flush=True)
                            runs[name].append(
                                await measure(
                                    wrk,
                                    server.url,
                                    server.tenant.api_key,
                                    mode == "streaming",
                                    options,
                                    CpuSplit(server.process.pid, upstream.pid, database_url),
                                )
                            )
                    completed = sum(r["requests"] + r["warmup"]["requests"] for r in runs["mtai"])
                    counts = await settled_counts(database_url, tenant, before + completed)
                    ledger[mode] = {
                        "completed_by_wrk": completed,
                        "recorded": sum(counts.values()) - before,
                        "by_status_cumulative": counts,
                    }
                    for name, measured in runs.items():
                        results[mode][name] = median_run(measured)
                    rounds[mode] = runs

            if litellm is not None:
                port = free_port()
                with litellm_serving(litellm, upstream_port, port, options.workers, work) as (
                    server,
                    key,
                ):
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    cpu = CpuSplit(server.pid, upstream.pid, database_url)
                    for mode in MODES:
                        print(f"[bench] gateway: LiteLLM, {mode}", flush=True)
                        results[mode]["litellm"] = await measure(
                            wrk, url, key, mode == "streaming", options, cpu
                        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summarize(options, results, ledger, rounds, commit)


# --- the report --------------------------------------------------------------------------------

NAMES = {"direct": "direct (upstream alone)", "mtai": "mtai", "litellm": "LiteLLM"}


def _added(result: Json, direct: Json, p: str) -> float:
    return float(result["latency_ms"][p]) - float(direct["latency_ms"][p])


def _ratio(a: float, b: float) -> float:
    if b <= 0:
        return math.inf if a > 0 else 0.0
    return a / b


def cpu_ms_per_request(run: Json) -> float:
    return float(run["cores"]["gateway"]) * 1000 / max(float(run["rps"]), 1e-9)


def _baseline_rows(
    direct: Json, runs: dict[str, list[Json]]
) -> tuple[list[list[str]], dict[str, float]]:
    """Round by round, the baseline and this commit side by side, and the median of each
    round's ratio (this commit / baseline): a round's two runs met the same machine."""
    figures: dict[str, list[float]] = {"rps": [], "p50": [], "p99": [], "cpu": []}
    rows = []
    for index, (base, ours) in enumerate(zip(runs["baseline"], runs["mtai"], strict=True)):
        ratios = {
            "rps": _ratio(ours["rps"], base["rps"]),
            "p50": _ratio(_added(ours, direct, "p50"), _added(base, direct, "p50")),
            "p99": _ratio(_added(ours, direct, "p99"), _added(base, direct, "p99")),
            "cpu": _ratio(cpu_ms_per_request(ours), cpu_ms_per_request(base)),
        }
        for key, value in ratios.items():
            figures[key].append(value)
        rows.append(
            [
                str(index + 1),
                f"{base['rps']:.0f} / {ours['rps']:.0f} ({ratios['rps']:.3f})",
                f"+{_added(base, direct, 'p50'):.1f} / +{_added(ours, direct, 'p50'):.1f} "
                f"({ratios['p50']:.3f})",
                f"+{_added(base, direct, 'p99'):.1f} / +{_added(ours, direct, 'p99'):.1f} "
                f"({ratios['p99']:.3f})",
                f"{cpu_ms_per_request(base):.2f} / {cpu_ms_per_request(ours):.2f} "
                f"({ratios['cpu']:.3f})",
            ]
        )
    medians = {key: statistics.median(values) for key, values in figures.items()}
    rows.append(
        [
            "median ratio",
            f"{medians['rps']:.3f}",
            f"{medians['p50']:.3f}",
            f"{medians['p99']:.3f}",
            f"{medians['cpu']:.3f}",
        ]
    )
    return rows, medians


def _baseline_targets(mode: str, commit: str, medians: dict[str, float], n: int) -> list[Json]:
    tolerance = TARGET_BASELINE_TOLERANCE
    return [
        target(
            f"{mode}: mtai's throughput vs the baseline {commit} (median of {n} paired rounds)",
            f">= {1 - tolerance:.2f} x",
            f"{medians['rps']:.3f} x",
            medians["rps"] >= 1 - tolerance,
        ),
        *(
            target(
                f"{mode}: mtai's added latency at {p} vs the baseline {commit} "
                f"(median of {n} paired rounds)",
                f"<= {1 + tolerance:.2f} x",
                f"{medians[p]:.3f} x",
                medians[p] <= 1 + tolerance,
            )
            for p in ("p50", "p99")
        ),
    ]


def summarize(
    options: GatewayOptions,
    results: dict[str, dict[str, Json]],
    ledger: Json,
    rounds: dict[str, dict[str, list[Json]]],
    commit: str | None,
) -> Json:
    tables: list[Json] = []
    targets: list[Json] = []
    findings: list[str] = []
    names = NAMES | {"baseline": f"mtai at {commit} (baseline)"}
    for mode in MODES:
        by = results[mode]
        direct = by["direct"]
        rows = []
        for name in ("direct", "baseline", "mtai", "litellm"):
            if name not in by:
                continue
            r = by[name]
            lat = r["latency_ms"]
            errors = sum(r["errors"].values())
            added = (
                ["", ""]
                if name == "direct"
                else [f"+{_added(r, direct, 'p50'):.1f}", f"+{_added(r, direct, 'p99'):.1f}"]
            )
            rows.append(
                [
                    names[name],
                    f"{r['rps']:.0f}",
                    f"{lat['p50']:.1f}",
                    f"{lat['p95']:.1f}",
                    f"{lat['p99']:.1f}",
                    f"{lat['max']:.1f}",
                    str(errors),
                    *added,
                ]
            )
        tables.append(
            table(
                f"{mode.capitalize()} chat completions ({options.connections} connections, "
                f"{options.seconds:g} s; latency in ms)",
                ["target", "req/s", "p50", "p95", "p99", "max", "errors", "added p50", "added p99"],
                rows,
                "Added: the gateway's percentile minus the direct run's."
                + (
                    " Streaming: wrk times the whole response, from the request's first byte to "
                    "the stream's last (`data: [DONE]`)."
                    if mode == "streaming"
                    else ""
                ),
            )
        )
        if commit is not None:
            paired, medians = _baseline_rows(direct, rounds[mode])
            tables.append(
                table(
                    f"{mode.capitalize()}: mtai against the baseline {commit}, paired rounds "
                    "(baseline / this commit (ratio))",
                    ["round", "req/s", "added p50 ms", "added p99 ms", "gateway CPU ms/request"],
                    paired,
                    "Each round measures the baseline and this commit one right after the "
                    "other (the order alternates from round to round); the ratio is this "
                    "commit's figure over the baseline's, so a throughput ratio below 1 or a "
                    "latency or CPU ratio above 1 is a regression. The median of the rounds' "
                    "ratios is what the targets judge.",
                )
            )
            targets.extend(_baseline_targets(mode, commit, medians, len(rounds[mode]["mtai"])))
        if "mtai" in by and "litellm" in by:
            mtai, lite = by["mtai"], by["litellm"]
            for p in ("p50", "p99"):
                ours, theirs = _added(mtai, direct, p), _added(lite, direct, p)
                ratio = _ratio(ours, theirs)
                targets.append(
                    target(
                        f"{mode}: mtai's added latency at {p} vs LiteLLM's",
                        f"<= {TARGET_LATENCY_RATIO:.3f} x",
                        f"{ours:+.1f} ms vs {theirs:+.1f} ms ({ratio:.3f} x)",
                        ratio <= TARGET_LATENCY_RATIO,
                    )
                )
            ratio = _ratio(mtai["rps"], lite["rps"])
            targets.append(
                target(
                    f"{mode}: mtai's throughput vs LiteLLM's",
                    f">= {TARGET_THROUGHPUT_RATIO:.1f} x",
                    f"{mtai['rps']:.0f} vs {lite['rps']:.0f} req/s ({ratio:.2f} x)",
                    ratio >= TARGET_THROUGHPUT_RATIO,
                )
            )
        if "mtai" in by:
            errors = sum(by["mtai"]["errors"].values())
            targets.append(
                target(f"{mode}: failed requests through mtai", "0", str(errors), errors == 0)
            )
            if mode in ledger:
                entry = ledger[mode]
                ok = entry["recorded"] >= entry["completed_by_wrk"]
                targets.append(
                    target(
                        f"{mode}: mtai's usage ledger rows / requests wrk completed",
                        ">= 1 (every request recorded)",
                        f"{entry['recorded']} / {entry['completed_by_wrk']}",
                        ok,
                    )
                )
    cpu_rows = []
    for mode in MODES:
        for name, r in results[mode].items():
            c = r["cores"]
            cpu_rows.append(
                [
                    mode,
                    names[name],
                    f"{c['gateway']:.2f}" if name != "direct" else "",
                    f"{c['upstream']:.2f}",
                    f"{c['wrk']:.2f}",
                    f"{c['postgres']:.2f}",
                    f"{c['redis']:.2f}",
                    f"{c['other']:.2f}",
                    f"{c['machine']:.2f}",
                ]
            )
    tables.append(
        table(
            "CPU during the measured runs (cores busy, of 2)",
            [
                "mode",
                "target",
                "gateway",
                "fake upstream",
                "wrk",
                "PostgreSQL",
                "Redis",
                "other",
                "machine",
            ],
            cpu_rows,
            "CPU seconds per wall second from /proc: the gateway's process tree (parent and "
            "workers), the fake upstream, wrk, the PostgreSQL server of the benchmark's database "
            "and Redis; other: everything else the machine ran. All of them share the same "
            "cores, so whatever the gateway does not use, the load generator and the upstream "
            "can.",
        )
    )
    if ledger:
        tables.append(
            table(
                "mtai's usage ledger (usage_events rows for the benchmark's tenant)",
                [
                    "mode",
                    "requests wrk completed (warm-up + measured)",
                    "rows recorded",
                    "rows by status (cumulative)",
                ],
                [
                    [
                        mode,
                        e["completed_by_wrk"],
                        e["recorded"],
                        ", ".join(
                            f"{k}: {v}" for k, v in sorted(e["by_status_cumulative"].items())
                        ),
                    ]
                    for mode, e in ledger.items()
                ],
                "wrk stops with up to one request in flight per connection; mtai still records "
                "those (as ok, or cancelled when a stream was cut), so rows can exceed completed "
                "requests by up to twice the connection count (warm-up and measured run).",
            )
        )
    for mode in MODES:
        by = results[mode]
        if "mtai" in by and "litellm" in by:
            findings.append(
                f"{mode.capitalize()}: mtai served {by['mtai']['rps']:.0f} req/s and LiteLLM "
                f"{by['litellm']['rps']:.0f} req/s against {by['direct']['rps']:.0f} req/s "
                f"direct; mtai used {by['mtai']['cores']['gateway']:.2f} cores, LiteLLM "
                f"{by['litellm']['cores']['gateway']:.2f}."
            )
    return {
        "title": "Gateway overhead: mtai and LiteLLM against a direct upstream",
        "method": [
            "Upstream: a fake OpenAI-compatible server (`bench/fake_upstream.py`, one process, "
            f"asyncio on uvloop, no framework) that answers every completion after "
            f"{options.latency_ms:g} ms: non-streaming, one JSON body with `usage`; streaming, "
            f"{fake_upstream.CHUNKS} SSE content chunks spread evenly over the "
            f"{options.latency_ms:g} ms, then the finish chunk, a usage chunk "
            "(`stream_options.include_usage`) and `data: [DONE]`.",
            f"Load: wrk {options.threads} threads, {options.connections} connections, closed "
            f"loop, {options.seconds:g} s per measured run after a {options.warmup_seconds:g} s "
            "warm-up run that is discarded; the same JSON body for every target (one user "
            f"message, max_tokens {MAX_TOKENS}, `stream_options.include_usage` when streaming). "
            'A 200 whose body lacks `"usage"` (or, streaming, `[DONE]`) counts as an error; '
            "so do non-2xx statuses, socket errors and responses slower than 10 s. wrk times a "
            "request from its first byte written to the response's last byte read: a stream "
            "counts whole.",
            "Targets, one after another, never together, each started for its own runs and "
            "stopped after them; before every run the benchmark waits (at most "
            f"{options.quiet_timeout:g} s) for a 3 s window in which other work uses under 15% "
            "of the CPU. (a) direct: wrk to the upstream. (b) mtai: `mtai serve --no-migrate` "
            f"with MTAI_WORKERS={options.workers} (one uvicorn worker process per core of this "
            "2-core machine), MTAI_ENV=production with generated secrets, the benchmark's "
            "migrated PostgreSQL database and Redis (database 7, flushed first); a tenant with "
            f"limits on but far above the load ({json.dumps(GENEROUS_LIMITS)}), so every request "
            "passes the rate, token, concurrency and budget checks, reserves and settles; a "
            "catalog model (provider openai, base_url the fake upstream, prices set) and an API "
            "key with scope chat, all made with the product's services; every request is "
            "written to the usage ledger, counted afterwards. (c) LiteLLM "
            f"`litellm[proxy]=={LITELLM_VERSION}` (its own venv, .venv-litellm) run as "
            f"`litellm --config ... --num_workers {options.workers}`: no database, a master "
            "key, the model as `openai/...` with api_base the fake upstream, no callbacks, the "
            "local model cost map (offline).",
            "Everything runs on the same machine and shares its cores: wrk, the upstream, the "
            "gateway, PostgreSQL and Redis. The CPU table shows how the cores were spent.",
            *(
                [
                    f"Baseline: mtai at commit {commit}, another checkout with its own venv, "
                    "served beside this commit's mtai (both started before the first round, "
                    "same secrets, database, Redis and upstream, a tenant each) and measured "
                    f"alternately, {options.rounds} rounds per mode (the baseline first in odd "
                    "rounds, this commit first in even ones); each mtai's table row is its "
                    "median round by throughput. The database carries this commit's "
                    "migrations; the baseline ignores the columns it does not know."
                ]
                if commit is not None
                else []
            ),
        ],
        "tables": tables,
        "targets": targets,
        "findings": findings,
        "data": {
            "options": {
                k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()
            },
            "results": results,
            "ledger": ledger,
            "rounds": rounds,
            "baseline_commit": commit,
            "litellm_version": LITELLM_VERSION if options.litellm else None,
        },
    }
