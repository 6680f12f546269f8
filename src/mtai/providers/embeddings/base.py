"""What every embedding model offers, the error its upstream failures become, and the retry
policy the remote ones (and the rerankers) share."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from mtai.errors import AppError
from mtai.providers.llm.base import UpstreamError

T = TypeVar("T")

# Short waits: embedding runs inside requests and ingestion jobs, which should fail with a clear
# error rather than hang. A Retry-After beyond the cap is not worth waiting for either.
_BACKOFF_SECONDS = 0.25
_MAX_WAIT_SECONDS = 5.0
# Jitter spreads out the concurrent callers (Bedrock runs 8 at once) that a throttle hit together.
_jitter = random.SystemRandom()


@runtime_checkable
class Embedder(Protocol):
    """A text embedding model.

    `name` is what a knowledge base records, so vectors of different models are never mixed.
    """

    name: str
    dimension: int
    max_tokens: int  # longest input the model reads; chunks are sized to it
    batch_size: int  # texts per upstream call / per local batch
    # Put before every query and every passage embedded for retrieval ("query: " and
    # "passage: " for the E5 family); empty for a model trained without them.
    query_prefix: str
    passage_prefix: str

    async def aembed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """(len(texts), dimension) float32 L2-normalised rows, in the order of `texts`."""
        ...

    def count_tokens(self, text: str) -> int: ...

    async def aclose(self) -> None: ...


class EmbeddingError(AppError):
    """An embedding upstream failed; the message says what to check and holds no secret."""

    status_code = 502
    code = "embedding_failed"


def normalise(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length in place (an all-zero row stays zero rather than NaN)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows /= np.maximum(norms, np.float32(1e-12))
    return rows


def _worth_retrying(exc: UpstreamError) -> bool:
    # An HTTP 408/429/5xx only: a timeout already cost the full timeout, and an unreachable
    # host or a malformed answer is a configuration problem another try will not fix.
    return exc.retryable and exc.status is not None


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    describe: Callable[[UpstreamError, int], AppError],
) -> T:
    """`call()`, retried `retries` times on throttling and server errors with a short backoff.

    The last UpstreamError becomes `describe(error, attempts)`, chained to it.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except UpstreamError as exc:
            if attempt > retries or not _worth_retrying(exc):
                raise describe(exc, attempt) from exc
            wait = exc.retry_after
            if wait is None:
                wait = _BACKOFF_SECONDS * 2 ** (attempt - 1) * _jitter.uniform(0.5, 1.0)
            await asyncio.sleep(min(wait, _MAX_WAIT_SECONDS))


def failure(doing: str, exc: UpstreamError, attempts: int, advice: str, secret: str | None) -> str:
    """`doing` ("Embedding with openai/x at https://...") failed: the upstream's words (it is
    the operator's, so they help; `secret` masked should it echo it back) and what to check."""
    detail = exc.explained.rstrip(". ")
    if secret:
        detail = detail.replace(secret, "***")
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    return f"{doing} failed{tried} ({detail}); {advice}."


def http_advice(status: int | None, *, settings: str, url_hint: str, model: str) -> str:
    """What to check after an HTTP endpoint configured by `settings` (MTAI_..._) failed."""
    if status in (401, 403):
        return f"check the API key ({settings}API_KEY)"
    if status == 404:
        return f"check {settings}BASE_URL ({url_hint}) and that the endpoint serves model '{model}'"
    if status == 429:
        return "the endpoint is rate limiting: retry later or raise its quota"
    if status is not None and status >= 500:
        return "the endpoint is failing: check its status and retry later"
    if status is None:
        return f"check that {settings}BASE_URL points at a reachable endpoint"
    return f"check {settings}MODEL and the input"


def aws_advice(
    exc: UpstreamError, by_code: Mapping[str, str], *, settings: str, model: str, region: str
) -> str:
    """What to check after a Bedrock call configured by `settings` (MTAI_..._) failed: the
    advice for its AWS error code (formatted with `model` and `region`), else by its kind."""
    cause = exc.__cause__
    code = ""
    if isinstance(cause, ClientError):
        code = str(cause.response.get("Error", {}).get("Code", ""))
    if code in by_code:
        return by_code[code].format(model=model, region=region)
    if isinstance(cause, NoCredentialsError):
        return (
            "no AWS credentials were found: attach a task role or set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(cause, EndpointConnectionError):
        return f"check {settings}REGION, the endpoint URL and network access"
    if exc.status is not None and exc.status >= 500:
        return "Bedrock is failing: retry later"
    return f"check the {settings}* settings"
