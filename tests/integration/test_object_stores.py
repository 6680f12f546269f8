"""One contract, two object stores: a local directory and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import secrets
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mtai.config import Settings
from mtai.errors import ConfigurationError, ServiceUnavailable
from mtai.providers.storage.base import (
    ObjectMissing,
    ObjectStore,
    StorageUnavailable,
    document_key,
    tenant_prefix,
)
from mtai.providers.storage.factory import open_store
from mtai.providers.storage.local import LocalObjectStore
from mtai.providers.storage.s3 import S3ObjectStore
from tests.support.s3_server import S3Server, create_bucket, free_ports

SIX_MB = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh bucket for this module's tests; each test uses keys of its own."""
    return create_bucket(s3_server)


def s3_store(server: S3Server, bucket: str, **overrides: Any) -> S3ObjectStore:
    values: dict[str, Any] = {
        "region": server.region,
        "endpoint_url": server.endpoint_url,
        "access_key_id": server.access_key_id,
        "secret_access_key": server.secret_access_key,
        **overrides,
    }
    return S3ObjectStore(bucket, **values)


@pytest.fixture(params=["local", "s3"])
def unopened_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    # Looked up only here, so the local cases never start the S3 server. (A sync fixture:
    # pytest-asyncio cannot set up fixtures through getfixturevalue from an async one.)
    server: S3Server = request.getfixturevalue("s3_server")
    return s3_store(server, request.getfixturevalue("s3_bucket"))


@pytest.fixture
async def store(unopened_store: ObjectStore) -> AsyncIterator[ObjectStore]:
    yield unopened_store
    await unopened_store.aclose()


def new_key() -> str:
    return document_key(uuid.uuid4(), uuid.uuid4())


async def test_put_get_round_trip(store: ObjectStore) -> None:
    small, large = new_key(), new_key()
    every_byte = bytes(range(256)) * 3
    big = os.urandom(SIX_MB)
    await store.put(small, every_byte, content_type="application/octet-stream")
    await store.put(large, big, content_type="application/pdf")
    assert await store.get(small) == every_byte
    assert await store.get(large) == big
    empty = new_key()
    await store.put(empty, b"", content_type="text/plain")
    assert await store.get(empty) == b""


async def test_overwrite_replaces_the_object(store: ObjectStore) -> None:
    key = new_key()
    await store.put(key, b"first version, longer than the second", content_type="text/plain")
    await store.put(key, b"second", content_type="text/plain")
    assert await store.get(key) == b"second"


async def test_get_missing_raises_object_missing(store: ObjectStore) -> None:
    key = new_key()
    with pytest.raises(ObjectMissing) as caught:
        await store.get(key)
    assert caught.value.key == key


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    key = new_key()
    await store.put(key, b"x", content_type="text/plain")
    await store.delete(key)
    with pytest.raises(ObjectMissing):
        await store.get(key)
    await store.delete(key)  # again: already gone
    await store.delete(new_key())  # never existed


async def test_delete_prefix_removes_only_that_tenant(store: ObjectStore) -> None:
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    a_keys = [document_key(tenant_a, uuid.uuid4()) for _ in range(3)]
    a_keys.append(f"{tenant_prefix(tenant_a)}exports/2024/report.csv")
    b_keys = [document_key(tenant_b, uuid.uuid4()) for _ in range(2)]
    for key in a_keys + b_keys:
        await store.put(key, key.encode(), content_type="text/plain")

    assert await store.delete_prefix(tenant_prefix(tenant_a)) == len(a_keys)

    for key in a_keys:
        with pytest.raises(ObjectMissing):
            await store.get(key)
    for key in b_keys:
        assert await store.get(key) == key.encode()
    assert await store.delete_prefix(tenant_prefix(tenant_a)) == 0


async def test_delete_prefix_pages_past_one_thousand_objects(store: ObjectStore) -> None:
    """S3 lists and deletes at most 1000 keys per call: deletion must page."""
    tenant, other = uuid.uuid4(), uuid.uuid4()
    count = 1005
    limiter = anyio.CapacityLimiter(32)

    async def put(index: int) -> None:
        async with limiter:
            await store.put(f"{tenant_prefix(tenant)}many/{index:05d}", b".", content_type="x/y")

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(put, index)
    survivor = document_key(other, uuid.uuid4())
    await store.put(survivor, b"kept", content_type="text/plain")

    assert await store.delete_prefix(tenant_prefix(tenant)) == count
    assert await store.delete_prefix(tenant_prefix(tenant)) == 0
    assert await store.get(survivor) == b"kept"


BAD_KEYS = [
    "../x",
    "/abs",
    "a/../../b",
    "a/./b",
    "a//b",
    "trailing/",
    "",
    "back\\slash",
    "nul\x00byte",
    "new\nline",
    "k" * 1025,
]


@pytest.mark.parametrize("bad", BAD_KEYS)
async def test_key_validation_rejects_unsafe_keys(
    store: ObjectStore, bad: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="key"):
        await store.put(bad, b"escaped", content_type="text/plain")
    with pytest.raises(ValueError, match="key"):
        await store.get(bad)
    with pytest.raises(ValueError, match="key"):
        await store.delete(bad)
    # Nothing was written beside the local store's root (where '../x' would have landed).
    assert [p.name async for p in anyio.Path(tmp_path).iterdir()] in ([], ["objects"])


@pytest.mark.parametrize("bad", ["", "/", "tenants", "../", "/abs/", "a/../", "tenants//"])
async def test_prefix_validation(store: ObjectStore, bad: str) -> None:
    with pytest.raises(ValueError, match=r"prefix|key"):
        await store.delete_prefix(bad)


async def test_check_passes_and_leaves_nothing(store: ObjectStore) -> None:
    await store.check()
    await store.check()
    assert await store.delete_prefix("_mtai-check/") == 0


def test_key_layout() -> None:
    tenant, document = uuid.uuid4(), uuid.uuid4()
    assert tenant_prefix(tenant) == f"tenants/{tenant}/"
    assert document_key(tenant, document) == f"tenants/{tenant}/documents/{document}/original"
    assert document_key(tenant, document).startswith(tenant_prefix(tenant))


# --- S3 failure modes: each one a StorageUnavailable (a 503) that says the fix ---


async def test_s3_missing_bucket_says_create_it(s3_server: S3Server) -> None:
    bucket = f"mtai-absent-{secrets.token_hex(4)}"
    store = s3_store(s3_server, bucket)
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await store.check()
        with pytest.raises(StorageUnavailable):
            await store.get(new_key())  # not ObjectMissing: the bucket, not the key, is gone
    finally:
        await store.aclose()
    message = str(caught.value)
    assert bucket in message
    assert "create the bucket" in message
    assert isinstance(caught.value, ServiceUnavailable)
    assert caught.value.status_code == 503


async def test_s3_wrong_secret_is_not_in_the_message(s3_server: S3Server, s3_bucket: str) -> None:
    wrong_secret = secrets.token_urlsafe(30)
    store = s3_store(s3_server, s3_bucket, secret_access_key=wrong_secret)
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await store.check()
    finally:
        await store.aclose()
    message = str(caught.value)
    assert "MTAI_S3_SECRET_ACCESS_KEY" in message
    for secret in (wrong_secret, s3_server.secret_access_key):
        assert secret not in message
        assert secret not in caught.value.detail


async def test_s3_unknown_access_key(s3_server: S3Server, s3_bucket: str) -> None:
    store = s3_store(
        s3_server, s3_bucket, access_key_id="AKIDUNKNOWN", secret_access_key="not-the-secret"
    )
    try:
        with pytest.raises(StorageUnavailable, match="MTAI_S3_ACCESS_KEY_ID") as caught:
            await store.check()
    finally:
        await store.aclose()
    assert "not-the-secret" not in str(caught.value)


async def test_s3_read_only_identity_is_told_which_permission(
    s3_server: S3Server, s3_bucket: str
) -> None:
    store = s3_store(
        s3_server,
        s3_bucket,
        access_key_id=s3_server.readonly_access_key_id,
        secret_access_key=s3_server.readonly_secret_access_key,
    )
    try:
        with pytest.raises(StorageUnavailable, match=r"s3:PutObject") as caught:
            await store.check()
    finally:
        await store.aclose()
    assert s3_bucket in str(caught.value)
    assert s3_server.readonly_secret_access_key not in str(caught.value)


async def test_s3_unreachable_endpoint(s3_server: S3Server) -> None:
    (port,) = free_ports(1)  # nothing listens there
    store = s3_store(
        s3_server, "mtai-nowhere", endpoint_url=f"http://127.0.0.1:{port}", connect_timeout=1
    )
    try:
        with pytest.raises(
            StorageUnavailable, match=r"cannot reach.*MTAI_S3_ENDPOINT_URL"
        ) as caught:
            await store.check()
    finally:
        await store.aclose()
    assert s3_server.secret_access_key not in str(caught.value)


async def test_s3_client_is_reused_and_reopened_after_aclose(
    s3_server: S3Server, s3_bucket: str
) -> None:
    store = s3_store(s3_server, s3_bucket)
    key = new_key()
    async with anyio.create_task_group() as group:  # concurrent first use: one client
        for _ in range(8):
            group.start_soon(store.check)
    await store.aclose()
    await store.put(key, b"after reopen", content_type="text/plain")
    assert await store.get(key) == b"after reopen"
    await store.aclose()


# --- the local store's own guarantees ---


async def test_local_files_are_private_and_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    key = new_key()
    await store.put(key, b"secret document", content_type="text/plain")
    await store.put(key, b"secret document v2", content_type="text/plain")
    file = tmp_path.joinpath("objects", *key.split("/"))
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    directory = file.parent
    while directory != tmp_path:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        directory = directory.parent
    assert [p.name for p in file.parent.iterdir()] == ["original"]


async def test_local_check_on_unwritable_directory(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root writes through mode bits, so make the directory impossible instead:
        # its path runs through a regular file, and mkdir fails.
        blocker = tmp_path / "a-file"
        blocker.write_bytes(b"")
        root = blocker / "objects"
    else:
        root = tmp_path / "read-only"
        root.mkdir(mode=0o500)
    store = LocalObjectStore(root)
    with pytest.raises(StorageUnavailable, match="MTAI_STORAGE_DIR") as caught:
        await store.check()
    assert str(root) in str(caught.value)
    with pytest.raises(StorageUnavailable):
        await store.put(new_key(), b"x", content_type="text/plain")


async def test_local_store_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    store = LocalObjectStore(blocker)
    with pytest.raises(StorageUnavailable, match=r"is a file, not a directory.*MTAI_STORAGE_DIR"):
        await store.check()


async def test_local_key_through_another_objects_file(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    await store.put("a/b", b"file", content_type="text/plain")
    with pytest.raises(ValueError, match="key"):
        await store.put("a/b/c", b"nested", content_type="text/plain")
    with pytest.raises(ObjectMissing):
        await store.get("a/b/c")
    with pytest.raises(ValueError, match="key"):
        await store.put("a", b"over a directory", content_type="text/plain")
    assert await store.get("a/b") == b"file"


# --- factory ---


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)


async def test_factory_local_default_and_override(tmp_path: Path) -> None:
    default = open_store(settings(tmp_path))
    assert isinstance(default, LocalObjectStore)
    assert default.name == "local"
    assert default.root == tmp_path / "data" / "objects"
    await default.check()
    chosen = open_store(settings(tmp_path, storage_dir=tmp_path / "elsewhere"))
    assert isinstance(chosen, LocalObjectStore)
    assert chosen.root == tmp_path / "elsewhere"


def test_factory_s3_requires_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MTAI_S3_BUCKET"):
        open_store(settings(tmp_path, storage_backend="s3"))
    with pytest.raises(ConfigurationError, match="MTAI_S3_SECRET_ACCESS_KEY"):
        open_store(settings(tmp_path, storage_backend="s3", s3_bucket="b", s3_access_key_id="k"))


async def test_factory_s3_against_the_server(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    store = open_store(
        settings(
            tmp_path,
            storage_backend="s3",
            s3_bucket=s3_bucket,
            s3_endpoint_url=s3_server.endpoint_url,
            s3_region=s3_server.region,
            s3_access_key_id=s3_server.access_key_id,
            s3_secret_access_key=s3_server.secret_access_key,
        )
    )
    try:
        assert isinstance(store, S3ObjectStore)
        assert store.name == "s3"
        await store.check()
    finally:
        await store.aclose()
