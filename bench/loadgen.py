"""The load generator: wrk (installed with apt-get when missing) driven by bench/wrk_chat.lua.

wrk keeps a fixed number of connections busy for a fixed time (closed loop: each connection
sends its next request when the last response has ended) and times each request from the
first byte written to the last byte read, so a streamed response counts whole.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import Json

SCRIPT = Path(__file__).resolve().parent / "wrk_chat.lua"
WRK_TIMEOUT = "10s"  # a response slower than this counts as a timeout error


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    return subprocess.run(  # noqa: S603  # fixed argv
        [*sudo, "apt-get", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package (apt-get, as root or with sudo) if needed."""
    found = shutil.which("wrk")
    if found:
        return found
    if not shutil.which("apt-get"):
        raise RuntimeError(
            "The gateway benchmark needs wrk (https://github.com/wg/wrk) and this machine has no "
            "apt-get to install it: install wrk and run again."
        )
    print("[bench] installing wrk (apt-get install -y wrk)", flush=True)
    done = _apt("install", "-y", "-q", "wrk")
    if done.returncode != 0:
        _apt("update", "-q")  # the package lists may be missing or stale
        done = _apt("install", "-y", "-q", "wrk")
    found = shutil.which("wrk")
    if done.returncode != 0 or not found:
        raise RuntimeError(
            "Could not install wrk with apt-get (needs root or password-less sudo and Debian's "
            f"package repository):\n{done.stderr[-2000:]}"
        )
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    statuses: dict[str, int]
    latency_ms: dict[str, float]
    wrk_cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_json(self) -> Json:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "statuses": self.statuses,
            "latency_ms": self.latency_ms,
            "wrk_cpu_seconds": round(self.wrk_cpu_seconds, 2),
        }


def run_wrk(
    wrk: str,
    url: str,
    body: Json,
    *,
    token: str | None,
    expect: str,
    connections: int,
    threads: int,
    seconds: float,
) -> WrkResult:
    """One wrk run (blocking: call it in a thread). `expect` must appear in every 200 body."""
    env = os.environ | {
        "WRK_BODY": json.dumps(body, separators=(",", ":")),
        "WRK_TOKEN": token or "",
        "WRK_EXPECT": expect,
    }
    argv = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(SCRIPT),
        url,
    ]
    # wrk is the only child this process reaps meanwhile: its CPU time is the difference.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({done.returncode}) against {url}:\n{done.stdout[-2000:]}\n"
            f"{done.stderr[-2000:]}"
        )
    raw = json.loads(line.removeprefix("WRK_JSON "))
    latency = {k: round(v / 1000, 2) for k, v in raw["latency_us"].items()}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkResult(
        requests=int(raw["requests"]),
        seconds=raw["duration_us"] / 1e6 or elapsed,
        errors={k: int(v) for k, v in raw["errors"].items()},
        statuses={str(k): int(v) for k, v in raw["statuses"].items()},
        latency_ms=latency,
        wrk_cpu_seconds=cpu,
    )
