"""AWS Bedrock Converse / ConverseStream, through the async AWS SDK (aiobotocore)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from mtai.providers.egress import EgressPolicy, EgressRefused, connector_args
from mtai.providers.llm.capabilities import Support, table
from mtai.providers.llm.base import (
    UNREACHABLE,
    Completion,
    CompletionRequest,
    Delta,
    StreamEnd,
    StreamEvent,
    UpstreamError,
    Usage,
)

_RETRYABLE = {
    "ThrottlingException": 429,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ModelNotReadyException": 503,
    "ModelTimeoutException": 504,
}
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


def _error_code(exc: ClientError) -> str:
    code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
    # An AWS error code is a word; anything else came from an endpoint that is not AWS.
    return code if re.fullmatch(r"[A-Za-z.]{1,64}", code) else "Unknown"


@contextlib.contextmanager
def _aws_errors() -> Iterator[None]:
    try:
        yield
    except EgressRefused as exc:
        raise UpstreamError(str(exc), retryable=False, server_fault=False) from exc
    except ClientError as exc:
        code = _error_code(exc)
        status = _RETRYABLE.get(code) or int(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        )
        raise UpstreamError(
            f"bedrock {code}",
            status=status,
            retryable=code in _RETRYABLE,
            detail=str(exc.response.get("Error", {}).get("Message", ""))[:300],
        ) from exc
    except (ReadTimeoutError, EndpointConnectionError, ConnectTimeoutError) as exc:
        raise UpstreamError(UNREACHABLE, retryable=True, detail=str(exc)[:300]) from exc
    except (BotoCoreError, ValueError) as exc:
        raise UpstreamError("bedrock call failed", retryable=True, detail=str(exc)[:300]) from exc
    except (KeyError, TypeError) as exc:  # botocore hands an unparsable body over as a dict
        raise UpstreamError(
            "bedrock sent a malformed response", retryable=True, detail=f"missing {exc}"
        ) from exc


SUPPORT = table(temperature=Support.NATIVE)


class BedrockProvider:
    """Bedrock for the platform (credentials from the AWS chain when the model has no key) or
    for a tenant's own credential (`tenant_credential`: its key id and secret, never the
    platform's AWS identity). `egress` guards an endpoint URL the tenant chose.

    A provider evicted from the registry's cache is closed while requests may still use it:
    its AWS client is then closed when the last of them ends, and opened again (and closed
    after use) by a late caller.
    """

    name = "bedrock"
    support = SUPPORT

    def __init__(
        self,
        region: str,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        timeout: float = 60.0,
        tenant_credential: bool = False,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._refusal: str | None = None
        if tenant_credential and not (access_key and secret_key):
            self._refusal = (
                "this tenant's Bedrock credential needs an access key id and a secret: enter it "
                "again as ACCESS_KEY_ID:SECRET_ACCESS_KEY (PUT /api/v1/provider-credentials/"
                "bedrock)"
            )
        self._endpoint_url = endpoint_url
        self._egress = egress
        options: dict[str, Any] = {
            "retries": {"total_max_attempts": 1},  # our router retries, with its own policy
            "read_timeout": timeout,
            "connect_timeout": min(timeout, 10.0),
        }
        if egress is not None:
            # Every connection resolved and checked by the guard; no proxy hides the target.
            options |= {"connector_args": connector_args(egress), "proxies": {}}
        self._kwargs: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "config": AioConfig(**options),
        }
        if access_key and secret_key:
            self._kwargs |= {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._opening = asyncio.Lock()
        self._active = 0
        self._retired = False

    async def _bedrock(self) -> Any:
        if self._refusal is not None:
            raise UpstreamError(self._refusal, retryable=False, server_fault=False)
        if self._egress is not None and self._endpoint_url is not None:
            try:
                self._egress.check_url(self._endpoint_url)
            except EgressRefused as exc:
                raise UpstreamError(str(exc), retryable=False, server_fault=False) from exc
        async with self._opening:
            if self._client is None:
                self._client = await self._stack.enter_async_context(
                    get_session().create_client("bedrock-runtime", **self._kwargs)
                )
        return self._client

    @contextlib.asynccontextmanager
    async def _in_use(self) -> AsyncIterator[Any]:
        self._active += 1
        try:
            yield await self._bedrock()
        finally:
            self._active -= 1
            if self._retired and self._active == 0:
                await self._close_client()

    async def _close_client(self) -> None:
        async with self._opening:
            await self._stack.aclose()
            self._stack = contextlib.AsyncExitStack()
            self._client = None

    @staticmethod
    def _args(request: CompletionRequest) -> dict[str, Any]:
        args: dict[str, Any] = {
            "modelId": request.model,
            "messages": [
                {"role": m.role, "content": [{"text": m.content}]}
                for m in request.messages
                if m.role != "system"
            ],
            "inferenceConfig": {"maxTokens": request.max_tokens},
        }
        system = [{"text": m.content} for m in request.messages if m.role == "system"]
        if system:
            args["system"] = system
        if request.temperature is not None:
            args["inferenceConfig"]["temperature"] = min(request.temperature, 1.0)
        return args

    async def complete(self, request: CompletionRequest) -> Completion:
        async with self._in_use() as client:
            return await self._complete(client, request)

    async def _complete(self, client: Any, request: CompletionRequest) -> Completion:
        with _aws_errors():
            body = await client.converse(**self._args(request))
            content = body["output"]["message"]["content"]
            usage = body.get("usage") or {}
            return Completion(
                text="".join(block.get("text", "") for block in content),
                usage=Usage(int(usage["inputTokens"]), int(usage["outputTokens"]))
                if usage
                else None,
                finish_reason=_FINISH.get(body.get("stopReason", ""), "stop"),
            )

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        async with (
            self._in_use() as client,
            contextlib.aclosing(self._stream(client, request)) as events,
        ):
            async for event in events:
                yield event

    async def _stream(
        self, client: Any, request: CompletionRequest
    ) -> AsyncGenerator[StreamEvent, None]:
        usage, finish = None, "stop"
        with _aws_errors():
            response = await client.converse_stream(**self._args(request))
            stream = response["stream"]
            try:
                async for event in stream:
                    if "contentBlockDelta" in event:
                        text = event["contentBlockDelta"]["delta"].get("text")
                        if text:
                            yield Delta(text)
                    elif "messageStop" in event:
                        finish = _FINISH.get(event["messageStop"].get("stopReason", ""), "stop")
                    elif "metadata" in event:
                        raw = event["metadata"].get("usage") or {}
                        usage = Usage(
                            int(raw.get("inputTokens", 0)), int(raw.get("outputTokens", 0))
                        )
            finally:
                # Closing the HTTP body is what stops a cancelled generation upstream.
                close = getattr(getattr(stream, "_raw_stream", None), "close", None)
                if callable(close):
                    close()
        yield StreamEnd(usage, finish)

    async def aclose(self) -> None:
        self._retired = True
        if self._active == 0:
            await self._close_client()
