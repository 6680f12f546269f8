"""The processes the gateway and process benchmarks start, and how they are measured.

`mtai serve` / `mtai worker` as subprocesses configured like production (generated secrets,
real PostgreSQL and Redis), the tenant, key and model they serve set up through the product's
own services, readiness polling, stopping by process group, and /proc readings: the process
tree, resident memory (VmRSS, and PSS where smaps_rollup is readable) and CPU time.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import Json, new_tenant, runtime_for
from mtai.db.embedded import free_port
from mtai.services.catalog import ModelDefinition
from mtai.services.principal import Scope, operator

__all__ = ["free_port"]

# A Redis database of its own (never 0): flushed with FLUSHDB at the start, never FLUSHALL.
REDIS_URL = "redis://127.0.0.1:6379/7"
REDIS_URL_ENV = "MTAI_BENCH_REDIS_URL"
MODEL = "bench-chat"
UPSTREAM_MODEL = "fake-upstream-model"
# Tenant limits that are on (every request is checked, reserved and settled) but far above
# what any run uses, so none of them refuses a request.
GENEROUS_LIMITS: Json = {
    "rpm": 10_000_000,
    "tpm": 10**12,
    "concurrency": 100_000,
    "monthly_usd": "1000000",
    "monthly_tokens": 10**15,
}
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV, REDIS_URL)


# --- processes -------------------------------------------------------------------------------


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def http_status(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None) -> int:
    """GET url on a new connection (http.client: no proxy from the environment); 0 if refused."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def wait_http(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
    interval: float = 0.01,
) -> float:
    """Poll url until it answers 200; seconds waited. Fails if the process exits first."""
    started = time.perf_counter()
    deadline = started + timeout
    while True:
        if http_status(url, timeout=1.0) == 200:
            return time.perf_counter() - started
        code = process.poll()
        if code is not None:
            raise RuntimeError(
                f"{process.args!r} exited with {code} before {url} answered; "
                f"its log ({log}) ends with:\n{tail(log)}"
            )
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s:\n{tail(log)}")
        time.sleep(interval)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM to the process group this benchmark started (start_new_session=True), SIGKILL to
    what is left after `timeout` s."""
    group = process.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        process.wait(10)
    # Workers that outlived their parent (same group): give them a moment, then kill them.
    deadline = time.monotonic() + 5
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """root and all its descendants, root first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo.extend(sorted(parents.get(pid, [])))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def role(pid: int, root: int) -> str:
    line = cmdline(pid)
    if pid == root:
        return "parent"
    if "resource_tracker" in line:
        return "resource tracker"
    if "spawn_main" in line or "multiprocessing" in line:
        return "worker"
    return "child"


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes (not of their children)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def rss_mib(pid: int) -> float | None:
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return int(fields[21]) * _PAGE_KIB / 1024  # rss in pages; same as VmRSS


def memory(pid: int) -> Json | None:
    """VmRSS and VmHWM from /proc/<pid>/status, PSS from smaps_rollup when readable (MiB)."""
    values: Json = {"pid": pid}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    except OSError:
        return None
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                values["Pss"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        values["Pss"] = None
    return values


def tree_memory(root: int) -> list[Json]:
    """memory() of every process of the tree, each with its role."""
    found = []
    for pid in process_tree(root):
        reading = memory(pid)
        if reading is not None:
            found.append(reading | {"role": role(pid, root)})
    return found


@dataclass
class MemorySampler:
    """Samples the RSS of a process tree every `interval` s in a thread: the peak of each
    process and the peak of the tree's sum at one instant."""

    root: int
    interval: float = 0.2
    peak_by_pid: dict[int, float] = field(default_factory=dict)
    peak_total: float = 0.0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0.0
            for pid in process_tree(self.root):
                value = rss_mib(pid)
                if value is None:
                    continue
                total += value
                self.peak_by_pid[pid] = max(self.peak_by_pid.get(pid, 0.0), value)
            self.peak_total = max(self.peak_total, total)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# --- mtai --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MtaiConfig:
    """What `mtai serve` and `mtai worker` are started with: production, generated secrets."""

    database_url: str
    data_dir: Path
    redis_url: str = field(default_factory=redis_url)
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    key_pepper: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    encryption_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    queue_backend: str = "inprocess"

    def overrides(self) -> Json:
        """Settings for `bench.common.runtime_for`, so that what it sets up the servers can read."""
        return {
            "jwt_secret": self.jwt_secret,
            "key_pepper": self.key_pepper,
            "encryption_key": self.encryption_key,
            "redis_url": self.redis_url,
            "queue_backend": self.queue_backend,
        }

    def env(self, workers: int = 1) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MTAI_") and k not in ("DATABASE_URL", "REDIS_URL")
        }
        return base | {
            "MTAI_ENV": "production",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "MTAI_JWT_SECRET": self.jwt_secret,
            "MTAI_KEY_PEPPER": self.key_pepper,
            "MTAI_ENCRYPTION_KEY": self.encryption_key,
            "MTAI_DATA_DIR": str(self.data_dir),
            "MTAI_WORKERS": str(workers),
            "MTAI_LOG_LEVEL": "WARNING",
            "MTAI_QUEUE_BACKEND": self.queue_backend,
            "MTAI_BOOTSTRAP_DEMO_TENANT": "",
            "MTAI_METRICS_PUBLIC": "true",  # loopback only; production needs this or a token
            "PYTHONUNBUFFERED": "1",
        }


async def flush_redis(url: str) -> None:
    """FLUSHDB on the benchmark's own Redis database (refuses database 0)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        index = client.connection_pool.connection_kwargs.get("db", 0)
        if int(index) == 0:
            raise RuntimeError(f"refusing to flush Redis database 0 ({url})")
        await client.flushdb()
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Provisioned:
    tenant_id: uuid.UUID
    api_key: str
    model: str


async def provision(
    config: MtaiConfig, upstream_port: int, scopes: Sequence[Scope], label: str
) -> Provisioned:
    """Through the product's services: a tenant with generous limits on, a catalog model
    pointing at the fake upstream (provider openai, with an api key and prices), and an API key
    with `scopes`."""
    async with runtime_for(config.database_url, **config.overrides()) as runtime:
        principal = await new_tenant(runtime, label)
        assert principal.tenant_id is not None
        await runtime.tenants.set_limits(operator(), principal.tenant_id, GENEROUS_LIMITS)
        await runtime.catalog.put_model(
            operator(),
            ModelDefinition(
                name=MODEL,
                provider="openai",
                upstream_model=UPSTREAM_MODEL,
                base_url=f"http://127.0.0.1:{upstream_port}/v1",
                api_key="sk-fake-upstream-" + secrets.token_hex(8),
                context_window=128_000,
                max_output_tokens=4_096,
                input_price_per_1m=Decimal("0.5"),
                output_price_per_1m=Decimal("1.5"),
                timeout_seconds=60,
            ),
        )
        _, plaintext = await runtime.keys.create(
            principal, name=f"bench-{label}", scopes=list(scopes), expires_at=None
        )
        return Provisioned(principal.tenant_id, plaintext, MODEL)


def spawn(
    argv: Sequence[str], log: Path, cwd: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """A server in its own process group (so `stop_process` stops all of it), output appended
    to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603  # argv of our own interpreter, modules and venvs
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )


def start_mtai(
    config: MtaiConfig,
    command: Sequence[str],
    workers: int,
    log: Path,
    python: str = sys.executable,
) -> subprocess.Popen[bytes]:
    """`python -m mtai <command>`, run from the data dir (so that no `.env` of the work tree is
    read), output to `log`. `python` may be another checkout's interpreter (its own venv)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return spawn([python, "-m", "mtai", *command], log, config.data_dir, config.env(workers))


def serve_command(port: int) -> list[str]:
    return ["serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)]


@contextlib.contextmanager
def mtai_serving(
    config: MtaiConfig,
    port: int,
    workers: int,
    log: Path,
    timeout: float = 120.0,
    python: str = sys.executable,
) -> Iterator[subprocess.Popen[bytes]]:
    """`mtai serve --no-migrate` until the block ends; ready when /ping answers and all
    `workers` worker processes exist."""
    process = start_mtai(config, serve_command(port), workers, log, python)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", process, log, timeout)
        wait_for_workers(process.pid, workers, timeout=60)
        yield process
    finally:
        stop_process(process)


def wait_for_workers(root: int, workers: int, timeout: float) -> None:
    """Until the tree has `workers` worker processes (uvicorn spawns them; with one worker it
    serves in the parent)."""
    if workers <= 1:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for pid in process_tree(root) if role(pid, root) == "worker") >= workers:
            # A worker exists before its app has started: let every one of them bind and start.
            time.sleep(2.0)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{workers} uvicorn workers did not appear under pid {root}")


def worker_pids(root: int) -> list[int]:
    pids = [pid for pid in process_tree(root) if role(pid, root) == "worker"]
    return pids or [root]
