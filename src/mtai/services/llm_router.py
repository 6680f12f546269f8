"""Calls a chain of models: per-model timeout, retries with backoff, fallbacks, circuit breaker.

Streams may be retried or failed over only until their first token; after that the client has
seen output, and an upstream failure ends the stream with an error.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from mtai.context import upstream_clock_var
from mtai.errors import AppError
from mtai.logging import get_logger
from mtai.providers.llm.base import (
    UNREACHABLE,
    Completion,
    CompletionRequest,
    LLMProvider,
    StreamEvent,
    UpstreamError,
)
from mtai.providers.llm.registry import Endpoint
from mtai.services.catalog import ModelSpec
from mtai.services.circuit_breaker import CircuitBreaker

log = get_logger(__name__)
MAX_BACKOFF_SECONDS = 8.0
BASE_BACKOFF_SECONDS = 0.25


class UpstreamFailed(AppError):
    status_code = 502
    code = "upstream_error"


class UpstreamRejected(AppError):
    """The upstream found the request itself invalid (a 4xx other than auth and limits): the
    caller's to fix, so a 400 that SDKs do not retry, unlike a 502."""

    status_code = 400
    code = "upstream_rejected_request"


# Upstream statuses that judge the request, not the credential or the upstream's health. A 404
# is not one: it means a wrong base URL or upstream model name, the operator's to fix.
_REQUEST_FAULTS = frozenset({400, 413, 422})


class UpstreamUnavailable(AppError):
    status_code = 503
    code = "upstream_unavailable"


@dataclass(frozen=True)
class Target:
    spec: ModelSpec
    endpoint: Endpoint
    provider: LLMProvider

    @property
    def breaker_key(self) -> str:
        return f"{self.endpoint.cache_key()}|{self.spec.upstream_model}"


def backoff(attempt: int, error: UpstreamError) -> float:
    if error.retry_after is not None:
        return min(error.retry_after, MAX_BACKOFF_SECONDS)
    ceiling = min(BASE_BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311  # jitter, not cryptography


def _give_up(errors: list[str], skipped: int) -> AppError:
    if not errors and skipped:
        return UpstreamUnavailable(
            "Every upstream for this model is failing and is being skipped for a cool-down; "
            "retry in a minute or choose another model."
        )
    return UpstreamFailed("The model's upstream failed: " + "; ".join(errors[-3:]))


class LLMRouter:
    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    async def _attempts(
        self,
        targets: list[Target],
        make: Callable[[Target], CompletionRequest],
        call: Callable[[Target, CompletionRequest], Awaitable[object]],
    ) -> tuple[Target, object]:
        clock = upstream_clock_var.get()
        started = time.perf_counter()
        try:
            return await self._try_each(targets, make, call)
        finally:
            if clock is not None:
                clock.seconds += time.perf_counter() - started

    async def _try_each(
        self,
        targets: list[Target],
        make: Callable[[Target], CompletionRequest],
        call: Callable[[Target, CompletionRequest], Awaitable[object]],
    ) -> tuple[Target, object]:
        errors: list[str] = []
        skipped = 0
        for target in targets:
            if not self.breaker.allow(target.breaker_key):
                skipped += 1
                continue
            for attempt in range(target.spec.max_retries + 1):
                try:
                    async with asyncio.timeout(target.spec.timeout_seconds):
                        result = await call(target, make(target))
                except TimeoutError:
                    error = UpstreamError(
                        UNREACHABLE,
                        retryable=True,
                        detail=f"no answer within {target.spec.timeout_seconds:g} s",
                    )
                except UpstreamError as exc:
                    error = exc
                except BaseException:
                    # Cancelled (or not the upstream's verdict): a half-open probe this was ends
                    # without one, so the next request probes; else the breaker stays shut.
                    self.breaker.release(target.breaker_key)
                    raise
                else:
                    self.breaker.success(target.breaker_key)
                    return target, result
                if error.server_fault:  # a rejected request says nothing of the upstream's health
                    self.breaker.failure(target.breaker_key)
                else:
                    self.breaker.release(target.breaker_key)
                errors.append(f"{target.spec.name}: {error}")
                log.warning(
                    "upstream.failed",
                    model=target.spec.name,
                    attempt=attempt,
                    error=str(error),
                    detail=error.detail,  # the upstream's own words: for the operator only
                )
                if not error.retryable and error.status in _REQUEST_FAULTS:
                    raise UpstreamRejected(
                        f"The model's upstream rejected the request as invalid: "
                        f"{str(error).rstrip('.')}. Check the request's parameters; the "
                        "operator's logs hold the upstream's answer under this request's id."
                    )
                if not error.retryable:
                    raise UpstreamFailed(
                        f"The model's upstream refused the request: {str(error).rstrip('.')}. "
                        "The operator's logs hold its answer under this request's id."
                    )
                if attempt < target.spec.max_retries and self.breaker.allow(target.breaker_key):
                    await asyncio.sleep(backoff(attempt, error))
                else:
                    break
        raise _give_up(errors, skipped)

    async def complete(
        self, targets: list[Target], make: Callable[[Target], CompletionRequest]
    ) -> tuple[Target, Completion]:
        async def call(target: Target, request: CompletionRequest) -> Completion:
            return await target.provider.complete(request)

        target, result = await self._attempts(targets, make, call)
        assert isinstance(result, Completion)
        return target, result

    async def open_stream(
        self, targets: list[Target], make: Callable[[Target], CompletionRequest]
    ) -> tuple[Target, StreamEvent, AsyncGenerator[StreamEvent, None]]:
        """The chosen target, its first event, and the rest of its stream."""

        async def call(
            target: Target, request: CompletionRequest
        ) -> tuple[StreamEvent, AsyncGenerator[StreamEvent, None]]:
            stream = target.provider.stream(request)
            try:
                first = await anext(stream)
            except BaseException:
                await stream.aclose()
                raise
            return first, stream

        target, result = await self._attempts(targets, make, call)
        assert isinstance(result, tuple)
        first, stream = result
        return target, first, stream
