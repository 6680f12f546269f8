"""`mtai serve` as `make run` runs it: embedded PostgreSQL, first-start credentials, reuse."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from mtai.db import embedded


@contextmanager
def serving(
    data_dir: Path, api_port: int, pg_port: int, stop: signal.Signals = signal.SIGINT
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MTAI_", "DATABASE_URL"))},
        "MTAI_ENV": "development",
        "MTAI_DATA_DIR": str(data_dir),
        "MTAI_PORT": str(api_port),
        "MTAI_EMBEDDED_PG_PORT": str(pg_port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mtai", "serve"],
        env=env,
        cwd=data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Application startup complete" in line:
                break
        assert any("Application startup complete" in ln for ln in lines), "".join(lines)
        yield process, lines
    finally:
        process.send_signal(stop)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_first_start_then_restart(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data_dir = tmp_path / ".mtai"
    # Whatever happens below, no server outlives the test.
    request.addfinalizer(lambda: embedded.stop(data_dir / "pgdata"))
    api_port, pg_port = embedded.free_port(), embedded.free_port()
    base = f"http://127.0.0.1:{api_port}"
    with serving(data_dir, api_port, pg_port) as (_, lines):
        output = "".join(lines)
        password = re.search(r"platform admin password: (\S+)", output)
        key = re.search(r"API key for tenant 'demo': (\S+)", output)
        assert password is not None
        assert key is not None
        assert f"mtai is starting at {base}" in output
        assert httpx.get(f"{base}/ping").json() == "pong"
        assert httpx.get(f"{base}/health").json()["checks"]["database"]["status"] == "ok"
        shown = subprocess.run(
            [
                str(embedded._bin("psql")),
                "-X",
                "-tA",
                "-c",
                "SHOW shared_buffers",
                f"postgresql://postgres@127.0.0.1:{pg_port}/postgres",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert shown.stdout.strip() == embedded.SHARED_BUFFERS
        login = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"email": "admin@mtai.local", "password": password.group(1)},
        )
        assert login.status_code == 200
        assert login.json()["user"]["is_platform_admin"] is True
        me = httpx.get(f"{base}/api/v1/auth/me", headers={"X-API-Key": key.group(1)})
        assert me.status_code == 200
    # Stopped with the API: the embedded server it started is gone.
    assert embedded.running_port(data_dir.resolve() / "pgdata") is None

    # SIGTERM, as `docker stop` or ECS sends it, stops the embedded server too.
    with serving(data_dir, api_port, pg_port, stop=signal.SIGTERM) as (_, lines):
        output = "".join(lines)
        assert "platform admin password" not in output  # first start only
        assert "embedded_postgres.started" in output
        me = httpx.get(f"{base}/api/v1/auth/me", headers={"X-API-Key": key.group(1)})
        assert me.status_code == 200  # data and dev secrets were kept
    assert embedded.running_port(data_dir.resolve() / "pgdata") is None
