"""The object store that the settings ask for."""

from __future__ import annotations

from mtai.config import Settings
from mtai.errors import ConfigurationError
from mtai.providers.storage.base import ObjectStore
from mtai.providers.storage.local import LocalObjectStore
from mtai.providers.storage.s3 import S3ObjectStore


def open_store(settings: Settings) -> ObjectStore:
    """Build the configured store; nothing is touched until it is used (see `check`)."""
    if settings.storage_backend == "local":
        return LocalObjectStore(settings.storage_dir or settings.data_dir / "objects")
    if settings.storage_backend != "s3":
        raise ConfigurationError(
            f"unknown MTAI_STORAGE_BACKEND {settings.storage_backend!r}: use 'local' or 's3'"
        )
    if not settings.s3_bucket:
        raise ConfigurationError(
            "MTAI_STORAGE_BACKEND=s3 needs MTAI_S3_BUCKET (an existing bucket), and "
            "MTAI_S3_REGION; MTAI_S3_ENDPOINT_URL for an S3-compatible server (MinIO, "
            "SeaweedFS); MTAI_S3_ACCESS_KEY_ID and MTAI_S3_SECRET_ACCESS_KEY unless the AWS "
            "credential chain (task role) provides them"
        )
    # An empty variable counts as unset.
    access_key = settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else ""
    secret_key = (
        settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else ""
    )
    if bool(access_key) != bool(secret_key):
        raise ConfigurationError(
            "set both MTAI_S3_ACCESS_KEY_ID and MTAI_S3_SECRET_ACCESS_KEY, or neither (to use "
            "the AWS credential chain)"
        )
    return S3ObjectStore(
        settings.s3_bucket,
        region=settings.s3_region,
        endpoint_url=settings.s3_endpoint_url,
        access_key_id=access_key or None,
        secret_access_key=secret_key or None,
    )
