"""AWS Bedrock Converse / ConverseStream, through the async AWS SDK (aiobotocore)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from mtai.providers.llm.base import (
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


@contextlib.contextmanager
def _aws_errors() -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        status = _RETRYABLE.get(code) or int(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        )
        raise UpstreamError(
            f"bedrock {code}: {exc.response.get('Error', {}).get('Message', '')[:300]}",
            status=status,
            retryable=code in _RETRYABLE,
        ) from exc
    except ReadTimeoutError as exc:
        raise UpstreamError("bedrock timed out", retryable=True) from exc
    except (BotoCoreError, ValueError) as exc:
        raise UpstreamError(f"bedrock call failed: {exc}", retryable=True) from exc
    except (KeyError, TypeError) as exc:  # botocore hands an unparsable body over as a dict
        raise UpstreamError(
            f"bedrock sent a malformed response: missing {exc}", retryable=True
        ) from exc


class BedrockProvider:
    name = "bedrock"

    def __init__(
        self,
        region: str,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        # Credentials default to the AWS chain (the ECS task role in production).
        self._kwargs: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "config": Config(
                retries={"total_max_attempts": 1},  # our router retries, with its own policy
                read_timeout=timeout,
                connect_timeout=min(timeout, 10.0),
            ),
        }
        if access_key and secret_key:
            self._kwargs |= {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def _bedrock(self) -> Any:
        if self._client is None:
            session = get_session()
            self._client = await self._stack.enter_async_context(
                session.create_client("bedrock-runtime", **self._kwargs)
            )
        return self._client

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
        client = await self._bedrock()
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
        client = await self._bedrock()
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
        await self._stack.aclose()
        self._client = None
