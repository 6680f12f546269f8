"""What the HTTP-based adapters share: turning transport failures and bad answers into
UpstreamErrors the router understands."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from mtai.providers.llm.base import UpstreamError, error_for_status


@contextlib.contextmanager
def transport_errors() -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamError("upstream timed out", retryable=True) from exc
    except httpx.TransportError as exc:
        raise UpstreamError(f"upstream unreachable: {exc}", retryable=True) from exc


async def raise_for_status(response: httpx.Response) -> None:
    if response.status_code != 200:
        text = (await response.aread()).decode(errors="replace")
        raise error_for_status(response.status_code, text, response.headers.get("retry-after"))


def malformed(provider: str, exc: Exception) -> UpstreamError:
    return UpstreamError(f"{provider} sent a malformed response: {exc}", retryable=True)
