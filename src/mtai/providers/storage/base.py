"""The object store interface, its errors, and the key rules every backend enforces."""

from __future__ import annotations

import uuid
from typing import Protocol

from mtai.errors import ServiceUnavailable

MAX_KEY_BYTES = 1024  # S3's limit, applied to every backend so keys stay portable


class ObjectMissing(Exception):
    """The key does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object at key {key!r}")
        self.key = key


class StorageUnavailable(ServiceUnavailable):
    """The store cannot be used; the message says the cause and the fix, never a secret."""


class ObjectStore(Protocol):
    name: str  # "local" or "s3", for /health and `mtai doctor`

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store `data` at `key`, replacing any object there."""
        ...

    async def get(self, key: str) -> bytes:
        """The object's bytes; raises ObjectMissing."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix` (which ends in '/'); returns how many."""
        ...

    async def check(self) -> None:
        """Write, read back and delete a probe object; raises StorageUnavailable."""
        ...

    async def aclose(self) -> None: ...


def tenant_prefix(tenant_id: uuid.UUID) -> str:
    return f"tenants/{tenant_id}/"


def document_key(tenant_id: uuid.UUID, document_id: uuid.UUID) -> str:
    return f"{tenant_prefix(tenant_id)}documents/{document_id}/original"


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise ValueError.

    Segments must be non-empty and neither '.' nor '..': besides blocking path traversal in
    the local store, this keeps one object reachable by one key only ('a//b' and 'a/./b' would
    be the same file locally but different objects in S3).
    """
    if not isinstance(key, str) or not key:
        raise ValueError("object key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ValueError(f"object key is longer than {MAX_KEY_BYTES} bytes")
    if not key.isprintable():  # also rejects NUL, newlines and other control characters
        raise ValueError(f"object key {key!r} contains a non-printable character")
    if "\\" in key:
        raise ValueError(f"object key {key!r} contains a backslash")
    if key.startswith("/"):
        raise ValueError(f"object key {key!r} must not start with '/'")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise ValueError(f"object key {key!r} has an empty, '.' or '..' segment")
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it names a whole 'directory' of keys (ends in '/'), else ValueError.

    Requiring the trailing '/' means 'tenants/1' can never also sweep up 'tenants/10/...', and
    an empty prefix (everything) is refused.
    """
    if not isinstance(prefix, str) or not prefix.endswith("/") or prefix == "/":
        raise ValueError(f"object prefix {prefix!r} must be non-empty and end with '/'")
    validate_key(prefix[:-1])
    return prefix
