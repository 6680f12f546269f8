"""What every benchmark shares: the database server, settings, a tenant, timing, the machine.

Nothing here imports the tests: the embedded server and the settings are set up the same way
`tests/support/postgres.py` and `tests/conftest.py` do, from the product's own modules.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from mtai.config import Settings
from mtai.db import embedded
from mtai.db.migrate import upgrade
from mtai.runtime import Runtime, open_runtime
from mtai.services.principal import ALL_SCOPES, Principal, Role, operator

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "eval" / "datasets" / "python-docs" / "documents.jsonl"
QUERIES = ROOT / "eval" / "datasets" / "python-docs" / "queries.jsonl"
APP_ROLE = "mtai_app"
# Set when the benchmarks should use an existing server (admin URL) instead of the embedded one.
DATABASE_ENV = "MTAI_BENCH_DATABASE_URL"

Json = dict[str, Any]


@dataclass(frozen=True)
class CorpusDocument:
    id: str
    title: str
    text: str


def load_corpus() -> list[CorpusDocument]:
    with CORPUS.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [CorpusDocument(r["id"], r["title"], r["text"]) for r in rows]


def load_queries() -> list[str]:
    with QUERIES.open(encoding="utf-8") as f:
        return [json.loads(line)["query"] for line in f if line.strip()]


# --- the database server -------------------------------------------------------------------


def _psql(admin_url: str, sql: str) -> None:
    subprocess.run(  # noqa: S603  # argv of our own paths and SQL
        [str(embedded._bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", admin_url, "-c", sql],
        check=True,
        capture_output=True,
    )


@dataclass(frozen=True)
class Server:
    admin_url: str
    postmaster_pid: int | None  # None: a server we did not start (its CPU counts as foreign)


@contextmanager
def database_server() -> Iterator[Server]:
    """PostgreSQL with pgvector: the embedded server in a temp dir (stopped and removed
    afterwards), or the one at $MTAI_BENCH_DATABASE_URL (an admin URL) when that is set."""
    given = os.environ.get(DATABASE_ENV)
    if given:
        yield Server(given, None)
        return
    root = Path(tempfile.mkdtemp(prefix="mtai-bench-pg-"))
    pgdata = root / "pgdata"
    try:
        server = embedded.start(pgdata, embedded.free_port())
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        print(f"[bench] embedded PostgreSQL on port {server.port} ({pgdata})", flush=True)
        yield Server(server.admin_url, pid)
    finally:
        embedded.stop(pgdata)
        shutil.rmtree(root, ignore_errors=True)


@asynccontextmanager
async def migrated_database(admin_url: str) -> AsyncIterator[str]:
    """A new database on the server, migrated to head; dropped afterwards."""
    name = f"mtai_bench_{secrets.token_hex(4)}"
    _psql(admin_url, f"CREATE DATABASE {name}")
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        await upgrade(url, APP_ROLE)
        yield url
    finally:
        _psql(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def bench_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Production settings with generated secrets; everything else at the product's defaults."""
    values: dict[str, Any] = {
        "env": "production",
        "database_url": database_url,
        "jwt_secret": secrets.token_urlsafe(48),
        "key_pepper": secrets.token_urlsafe(48),
        "encryption_key": secrets.token_urlsafe(48),
        "data_dir": data_dir,
        "log_level": "WARNING",
        **overrides,
    }
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def runtime_for(database_url: str, **overrides: Any) -> AsyncIterator[Runtime]:
    """The product's Runtime (no background tasks) with its own data dir, removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="mtai-bench-data-"))
    try:
        async with open_runtime(
            bench_settings(database_url, data_dir, **overrides), background=False
        ) as runtime:
            yield runtime
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def new_tenant(runtime: Runtime, label: str) -> Principal:
    """A fresh tenant and its owner's principal (all scopes), as an API request would have."""
    slug = f"bench-{label}-{secrets.token_hex(3)}"
    tenant, _ = await runtime.tenants.create(operator(), slug=slug, name=slug.upper())
    return Principal(tenant_id=tenant.id, role=Role.OWNER, scopes=ALL_SCOPES)


async def owner_connection(database_url: str) -> asyncpg.Connection:
    """A plain connection as the database owner, in the platform scope (RLS is FORCEd)."""
    url = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    conn: asyncpg.Connection = await asyncpg.connect(url)
    await conn.execute("SELECT set_config('app.scope', 'platform', false)")
    return conn


# --- numbers -------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def latency_summary(seconds: Sequence[float]) -> Json:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "mean_ms": round(statistics.fmean(ms), 2),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


def table(title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> Json:
    """A table for the report: what docs/benchmarks.md shows, next to the raw numbers."""
    return {"title": title, "columns": columns, "rows": rows, "note": note}


def target(name: str, goal: str, measured: str, met: bool) -> Json:
    return {"name": name, "target": goal, "measured": measured, "met": met}


# --- the machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _hypervisor() -> str | None:
    try:
        out = subprocess.run(
            ["lscpu"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except OSError:
        return None
    for line in out.splitlines():
        if line.startswith("Hypervisor vendor:"):
            return line.split(":", 1)[1].strip()
    return None


def _blas() -> str:
    import numpy as np

    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        return "unknown"


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  # fixed argv
        ["git", "-C", str(ROOT), *args],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )


def _git_commit() -> str | None:
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "src")
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + (" (src/ modified)" if dirty.stdout.strip() else "")


async def machine(admin_url: str) -> Json:
    import numpy as np

    url = make_url(admin_url).set(drivername="postgresql").render_as_string(False)
    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval("SHOW server_version")
        pgvector = await conn.fetchval(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
        )
        server = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in (
                "shared_buffers",
                "work_mem",
                "maintenance_work_mem",
                "effective_cache_size",
                "max_parallel_workers_per_gather",
                "max_parallel_maintenance_workers",
                "jit",
            )
        }
    finally:
        await conn.close()
    cpus = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cpus": cpus,
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus,
        "hypervisor": _hypervisor(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "blas": _blas(),
        "postgresql": str(version),
        "pgvector": str(pgvector),
        "postgres_settings": server,
        "database": "embedded (mtai.db.embedded)" if not os.environ.get(DATABASE_ENV) else "given",
        "mtai_commit": _git_commit(),
    }


# --- other work on the machine --------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    steal = values[7] if len(values) > 7 else 0
    guest = sum(values[8:10]) if len(values) > 9 else 0  # already counted in user/nice
    return (sum(values) - idle - steal - guest) / _TICKS


def _process_seconds(pid: int, children: bool) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + ((cutime + cstime) if children else 0)) / _TICKS


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class CpuMeter:
    """How much of the machine's CPU went to work other than this run (its own process and
    the PostgreSQL server it started) while a benchmark ran: other work on a 2-core machine
    bends every number here."""

    def __init__(self, postmaster_pid: int | None) -> None:
        self.postmaster_pid = postmaster_pid
        self._start: tuple[float, float, float] | None = None

    def _own_seconds(self) -> float:
        own = _process_seconds(os.getpid(), children=True)
        if self.postmaster_pid is not None:
            own += _process_seconds(self.postmaster_pid, children=True)
            own += sum(_process_seconds(p, False) for p in _children(self.postmaster_pid))
        return own

    def _sample(self) -> tuple[float, float, float]:
        return time.monotonic(), _machine_busy_seconds(), self._own_seconds()

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> Json:
        assert self._start is not None
        wall0, busy0, own0 = self._start
        wall1, busy1, own1 = self._sample()
        capacity = max(1e-9, (wall1 - wall0) * (os.cpu_count() or 1))
        own = own1 - own0
        foreign = max(0.0, (busy1 - busy0) - own)
        return {
            "own_cpu_share": round(own / capacity, 3),
            "foreign_cpu_share": round(foreign / capacity, 3),
            "loadavg_at_end": round(os.getloadavg()[0], 2),
        }


def wait_until_quiet(postmaster_pid: int | None, timeout: float, threshold: float = 0.15) -> Json:
    """Wait (at most `timeout` s) for a 3 s window in which other work used < threshold of the
    CPU; what was seen last is returned either way."""
    deadline = time.monotonic() + timeout
    while True:
        meter = CpuMeter(postmaster_pid)
        meter.start()
        time.sleep(3)
        seen = meter.stop()
        if seen["foreign_cpu_share"] < threshold or time.monotonic() >= deadline:
            return seen
        print(
            f"[bench] waiting for a quiet machine: other work uses "
            f"{seen['foreign_cpu_share']:.0%} of the CPU",
            flush=True,
        )
