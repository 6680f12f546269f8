"""What the HTTP-based adapters share: turning transport failures and bad answers into
UpstreamErrors the router understands, without handing the upstream's words to tenants."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from mtai.providers.egress import EgressRefused
from mtai.providers.llm.base import UNREACHABLE, UpstreamError, error_for_status, redact

_SECRET_HEADERS = ("authorization", "x-api-key")


def request_secrets(request: httpx.Request) -> list[str]:
    """The credentials a request carried, to be blanked out of anything the upstream echoes."""
    found: list[str] = []
    for name in _SECRET_HEADERS:
        value = request.headers.get(name)
        if value:
            found += [value, value.removeprefix("Bearer ").strip()]
    return found


@contextlib.contextmanager
def transport_errors() -> Iterator[None]:
    try:
        yield
    except EgressRefused as exc:
        # The tenant's own configuration: not the upstream's fault, and no retry will help.
        raise UpstreamError(str(exc), retryable=False, server_fault=False) from exc
    except httpx.DecodingError as exc:
        # A body that does not match its Content-Encoding: a malformed answer, not a crash.
        raise UpstreamError(
            "the upstream sent a response that could not be decoded",
            retryable=True,
            detail=f"{type(exc).__name__}: {exc}"[:300],
        ) from exc
    except httpx.TransportError as exc:
        # Refused, reset and timed out read alike to the tenant; the operator's log tells apart.
        raise UpstreamError(
            UNREACHABLE, retryable=True, detail=f"{type(exc).__name__}: {exc}"[:300]
        ) from exc


async def raise_for_status(response: httpx.Response) -> None:
    if response.status_code != 200:
        text = (await response.aread()).decode(errors="replace")
        raise error_for_status(
            response.status_code,
            redact(text, request_secrets(response.request)),
            response.headers.get("retry-after"),
        )


def malformed(provider: str, exc: Exception) -> UpstreamError:
    return UpstreamError(
        f"{provider} sent a malformed response", retryable=True, detail=repr(exc)[:300]
    )
