"""`rediss://`: certificates are verified by default; a private CA is accepted when given; ACL
users authenticate. Against a real Redis started here with TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.exceptions import AuthenticationError, ConnectionError

from mtai.providers.limits.base import LimitStoreUnavailable
from mtai.providers.limits.redis_store import RedisLimitStore, connect


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
