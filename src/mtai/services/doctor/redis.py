"""Doctor check of Redis: reachable, TLS as the URL says, authenticated.

The usual ElastiCache mistakes look alike from the client (a closed connection, an SSL error),
so on failure the server is probed once more: does it speak TLS at all? That tells a
`redis://` URL for a TLS-only cluster from a `rediss://` URL for a plain server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

from redis.exceptions import AuthenticationError, RedisError, ResponseError

from mtai.config import Settings
from mtai.providers.limits.redis_store import connect
from mtai.services.doctor.result import CONNECT_TIMEOUT_SECONDS, CheckResult

NAME = "redis"
TLS_FIX = (
    "the server only speaks TLS (ElastiCache with in-transit encryption): write the URL as "
    "rediss://:AUTH_TOKEN@HOST:6379/0"
)
PLAIN_FIX = (
    "the server does not speak TLS: write the URL as redis://..., or turn on in-transit "
    "encryption on the server"
)


async def _speaks_tls(host: str, port: int) -> bool:
    """Whether a TLS handshake succeeds, certificate unchecked: only the protocol is asked."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), CONNECT_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    # The server may drop the connection first; the handshake is what mattered.
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _where(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 6379
    return host, port, f"{parts.scheme}://{host}:{port}"


def _auth_problem(where: str) -> CheckResult:
    return CheckResult(
        NAME,
        False,
        f"{where} refused the credentials",
        "put the auth token (ElastiCache) or user:password (ACL) in the URL: "
        "rediss://:TOKEN@HOST:6379/0 or rediss://USER:PASSWORD@HOST:6379/0",
    )


async def _explain(url: str, ca_file: str | None, error: Exception) -> CheckResult:
    host, port, where = _where(url)
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, AuthenticationError) or "NOAUTH" in str(error):
        return _auth_problem(where)
    if "CERTIFICATE_VERIFY_FAILED" in str(error):
        return CheckResult(
            NAME,
            False,
            f"{where}: the server's TLS certificate is not trusted ({error})",
            "ElastiCache's certificates are trusted by the system CAs; for a private CA set "
            "MTAI_REDIS_CA_FILE to its bundle"
            + ("" if ca_file is None else f" (now {ca_file}: is it the right one?)"),
        )
    tls = await _speaks_tls(host, port)
    if url.startswith("redis://") and tls:
        return CheckResult(NAME, False, f"{where}: plain connection closed ({text})", TLS_FIX)
    if url.startswith("rediss://") and not tls and "refused" not in str(error).lower():
        return CheckResult(NAME, False, f"{where}: TLS handshake failed ({text})", PLAIN_FIX)
    return CheckResult(
        NAME,
        False,
        f"cannot reach {where}: {text}",
        "check host and port in REDIS_URL, that Redis runs, and that security groups let the "
        "tasks reach it on 6379",
    )


async def check(settings: Settings) -> CheckResult:
    url = settings.redis_url
    if not url:
        if settings.queue_backend == "redis":
            return CheckResult(
                NAME,
                False,
                "MTAI_QUEUE_BACKEND=redis but REDIS_URL is unset",
                "set REDIS_URL (redis:// or rediss://), or MTAI_QUEUE_BACKEND=inprocess",
            )
        return CheckResult(
            NAME,
            True,
            "REDIS_URL unset: rate limits and budgets are kept per process (one API process only)",
        )
    if not url.startswith(("redis://", "rediss://")):
        return CheckResult(
            NAME, False, "REDIS_URL must start with redis:// or rediss://", "fix REDIS_URL"
        )
    client = connect(url, ca_file=settings.redis_ca_file, timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        await asyncio.wait_for(client.ping(), CONNECT_TIMEOUT_SECONDS * 2)
    except ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            return _auth_problem(_where(url)[2])
        return await _explain(url, settings.redis_ca_file, exc)
    except (RedisError, OSError, TimeoutError) as exc:
        return await _explain(url, settings.redis_ca_file, exc)
    finally:
        await client.aclose()
    return CheckResult(NAME, True, f"{_where(url)[2]}: PING answered")
