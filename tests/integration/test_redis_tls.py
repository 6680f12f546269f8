"""`rediss://`: certificates are verified by default; a private CA is accepted when given; ACL
users authenticate. Against a real Redis started here with TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import AuthenticationError, ConnectionError

from mtai.providers.limits.base import LimitStoreUnavailable
from mtai.providers.limits.redis_store import RedisLimitStore, connect
from tests.support.redis_server import free_port


def _write_certificates(directory: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mtai test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(cert.public_bytes(pem))
    (directory / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[tuple[int, Path]]:
    directory = Path(tempfile.mkdtemp(prefix="mtai-test-tls-"))
    _write_certificates(directory)
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(directory / "server.crt"),
            "--tls-key-file",
            str(directory / "server.key"),
            "--tls-ca-cert-file",
            str(directory / "ca.crt"),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--user",
            "default",
            "off",
            "--user",
            "mtai",
            "on",
            ">s3cret-pass",
            "~*",
            "&*",
            "+@all",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:  # the TLS port accepts connections once the server is up
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "TLS redis-server did not start"
            time.sleep(0.05)
    try:
        yield port, directory
    finally:
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


async def test_tls_with_private_ca_and_acl_user(tls_redis: tuple[int, Path]) -> None:
    port, directory = tls_redis
    client = connect(
        f"rediss://mtai:s3cret-pass@127.0.0.1:{port}/0", ca_file=str(directory / "ca.crt")
    )
    assert await client.ping()
    await client.aclose()


async def test_tls_certificates_are_verified_by_default(tls_redis: tuple[int, Path]) -> None:
    port, _ = tls_redis
    store = RedisLimitStore(connect(f"rediss://mtai:s3cret-pass@127.0.0.1:{port}/0"))
    with pytest.raises(LimitStoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await store.ping()
    await store.aclose()


async def test_plain_url_against_tls_and_wrong_password_fail_clearly(
    tls_redis: tuple[int, Path],
) -> None:
    port, directory = tls_redis
    plain = connect(f"redis://mtai:s3cret-pass@127.0.0.1:{port}/0")
    with pytest.raises(ConnectionError):
        await plain.ping()
    await plain.aclose()
    wrong = connect(f"rediss://mtai:nope@127.0.0.1:{port}/0", ca_file=str(directory / "ca.crt"))
    with pytest.raises(AuthenticationError):
        await wrong.ping()
    await wrong.aclose()
