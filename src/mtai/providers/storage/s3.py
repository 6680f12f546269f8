"""Objects in an S3 bucket (AWS S3, or an S3-compatible server such as MinIO or SeaweedFS)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from mtai.providers.storage.base import (
    ObjectMissing,
    StorageUnavailable,
    validate_key,
    validate_prefix,
)

_CHECK_PREFIX = "_mtai-check/"
_DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts
_PERMISSION = {
    "PutObject": "s3:PutObject",
    "GetObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
}
_BAD_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
    }
)
_WRONG_REGION = frozenset(
    {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"}
)
_MISSING_KEY = frozenset({"NoSuchKey", "404", "NotFound"})


class S3ObjectStore:
    """One long-lived client, made on first use and closed by `aclose`."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        # Credentials default to the AWS chain (the ECS task role in production).
        self._kwargs: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "config": Config(
                retries={"mode": "standard", "total_max_attempts": 3},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                # S3-compatible servers are reached by host name, without per-bucket DNS.
                s3={"addressing_style": "path"} if endpoint_url else None,
            ),
        }
        if access_key_id and secret_access_key:
            self._kwargs |= {
                "aws_access_key_id": access_key_id,
                "aws_secret_access_key": secret_access_key,
            }
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._client_lock = anyio.Lock()

    @property
    def _where(self) -> str:
        """The bucket and endpoint for messages; any user:password in the URL is left out."""
        if not self.endpoint_url:
            return f"S3 bucket {self.bucket!r} (AWS, region {self._kwargs['region_name']})"
        parts = urlsplit(self.endpoint_url)
        host = parts.netloc.rpartition("@")[2]
        return f"S3 bucket {self.bucket!r} at {parts.scheme}://{host}"

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._client_lock:  # two first calls at once must not make two clients
                if self._client is None:
                    try:
                        self._client = await self._stack.enter_async_context(
                            get_session().create_client("s3", **self._kwargs)
                        )
                    except (BotoCoreError, ValueError) as exc:
                        raise StorageUnavailable(
                            f"cannot set up the S3 client for {self._where} "
                            f"({type(exc).__name__}): check MTAI_S3_ENDPOINT_URL and MTAI_S3_REGION"
                        ) from exc
        return self._client

    @contextlib.contextmanager
    def _errors(self, operation: str, key: str | None = None) -> Iterator[None]:
        """Turn botocore's errors into ObjectMissing or StorageUnavailable with the fix.

        Messages carry error codes only: the server's text and botocore's can quote URLs,
        headers or signing details, and credentials must never reach a message.
        """
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                raise StorageUnavailable(
                    f"{self._where} does not exist: create the bucket, or set MTAI_S3_BUCKET "
                    "to an existing one"
                ) from exc
            if key is not None and (code in _MISSING_KEY or status == 404):
                raise ObjectMissing(key) from exc
            if code in _BAD_CREDENTIALS:
                raise StorageUnavailable(
                    f"{self._where} refused the credentials ({code}): check "
                    "MTAI_S3_ACCESS_KEY_ID and MTAI_S3_SECRET_ACCESS_KEY, or the AWS "
                    "credential chain (task role) when they are unset"
                ) from exc
            if code in _WRONG_REGION:
                raise StorageUnavailable(
                    f"{self._where} is in another region ({code}): set MTAI_S3_REGION to the "
                    "bucket's region"
                ) from exc
            if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
                permission = _PERMISSION.get(operation, f"s3:{operation}")
                raise StorageUnavailable(
                    f"{self._where} denied {operation} ({code}): grant the credentials "
                    f"{permission} on the bucket (mtai needs s3:PutObject, s3:GetObject, "
                    "s3:DeleteObject and s3:ListBucket)"
                ) from exc
            raise StorageUnavailable(
                f"{self._where} failed {operation} ({code}, HTTP {status}): retry later, and "
                "check the S3 service's health if it persists"
            ) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StorageUnavailable(
                f"no usable credentials for {self._where} ({type(exc).__name__}): set "
                "MTAI_S3_ACCESS_KEY_ID and MTAI_S3_SECRET_ACCESS_KEY, or give the process an "
                "AWS role"
            ) from exc
        except BotoConnectionError as exc:
            raise StorageUnavailable(
                f"cannot reach {self._where} ({type(exc).__name__}): check "
                "MTAI_S3_ENDPOINT_URL and that the S3 service is up and reachable"
            ) from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(
                f"{self._where} failed {operation} ({type(exc).__name__}): check "
                "MTAI_S3_ENDPOINT_URL and MTAI_S3_REGION, and retry later"
            ) from exc

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        validate_key(key)
        s3 = await self._s3()
        with self._errors("PutObject"):
            await s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    async def get(self, key: str) -> bytes:
        validate_key(key)
        s3 = await self._s3()
        with self._errors("GetObject", key):
            response = await s3.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

    async def delete(self, key: str) -> None:
        validate_key(key)
        s3 = await self._s3()
        with contextlib.suppress(ObjectMissing), self._errors("DeleteObject", key):
            # S3 answers 204 for a missing key too; some compatible servers say 404.
            await s3.delete_object(Bucket=self.bucket, Key=key)

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        s3 = await self._s3()
        deleted = 0
        with self._errors("ListObjectsV2"):
            # Deleting each page as it comes is safe: the continuation token is a position in
            # key order, not an offset, so removed keys do not shift the next page.
            paginator = s3.get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": _DELETE_BATCH}
            )
            async for page in pages:
                keys = [item["Key"] for item in page.get("Contents", [])]
                for start in range(0, len(keys), _DELETE_BATCH):
                    deleted += await self._delete_batch(s3, keys[start : start + _DELETE_BATCH])
        return deleted

    async def _delete_batch(self, s3: Any, keys: list[str]) -> int:
        if not keys:
            return 0
        with self._errors("DeleteObjects"):
            response = await s3.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
        errors = response.get("Errors") or []
        # A key that vanished in the meantime is not an error, just not counted.
        failed = [e for e in errors if e.get("Code") != "NoSuchKey"]
        if failed:
            codes = sorted({str(e.get("Code")) for e in failed})
            raise StorageUnavailable(
                f"{self._where} refused to delete {len(failed)} of {len(keys)} objects "
                f"({', '.join(codes)}): grant the credentials s3:DeleteObject on the bucket"
            )
        return len(keys) - len(errors)

    async def check(self) -> None:
        key = f"{_CHECK_PREFIX}{uuid.uuid4().hex}"
        probe = os.urandom(32)
        await self.put(key, probe, content_type="application/octet-stream")
        try:
            read_back = await self.get(key)
        except ObjectMissing as exc:
            raise StorageUnavailable(
                f"{self._where} lost an object it had just stored: check the bucket's "
                "lifecycle rules and the service's consistency"
            ) from exc
        s3 = await self._s3()
        with self._errors("ListObjectsV2"):  # delete_prefix lists, so listing must work too
            await s3.list_objects_v2(Bucket=self.bucket, Prefix=_CHECK_PREFIX, MaxKeys=1)
        await self.delete(key)
        if read_back != probe:
            raise StorageUnavailable(
                f"{self._where} returned other bytes than were stored: check the S3 service"
            )

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None
        self._stack = contextlib.AsyncExitStack()
