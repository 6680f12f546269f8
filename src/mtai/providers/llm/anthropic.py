"""Anthropic Messages API."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from mtai.providers.llm.capabilities import Support, table
from mtai.providers.llm.base import (
    Completion,
    CompletionRequest,
    Delta,
    StreamEnd,
    StreamEvent,
    UpstreamError,
    Usage,
    redact,
)
from mtai.providers.llm.http import malformed, raise_for_status, transport_errors
from mtai.providers.llm.sse import events

API_VERSION = "2023-06-01"
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


SUPPORT = table(temperature=Support.NATIVE)


class AnthropicProvider:
    name = "anthropic"
    support = SUPPORT

    def __init__(self, base_url: str, api_key: str | None, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or ""
        self.headers = {"x-api-key": self.api_key, "anthropic-version": API_VERSION}
        self.client = client

    def _body(self, request: CompletionRequest, stream: bool) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
            "stream": stream,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, 1.0)  # Anthropic's range is 0-1
        return body

    async def complete(self, request: CompletionRequest) -> Completion:
        with transport_errors():
            response = await self.client.post(
                f"{self.base_url}/v1/messages",
                json=self._body(request, False),
                headers=self.headers,
            )
            await raise_for_status(response)
        try:
            body = response.json()
            text = "".join(b.get("text", "") for b in body["content"] if b.get("type") == "text")
            usage = body.get("usage") or {}
            return Completion(
                text=text,
                usage=Usage(int(usage["input_tokens"]), int(usage["output_tokens"]))
                if usage
                else None,
                finish_reason=_FINISH.get(body.get("stop_reason") or "", "stop"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise malformed(self.name, exc) from exc

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        prompt_tokens, completion_tokens, finish = 0, 0, "stop"
        with transport_errors():
            async with self.client.stream(
                "POST",
                f"{self.base_url}/v1/messages",
                json=self._body(request, True),
                headers=self.headers,
            ) as response:
                await raise_for_status(response)
                async for event, data in events(response):
                    try:
                        payload = json.loads(data)
                        if event == "message_start":
                            usage = payload["message"].get("usage") or {}
                            prompt_tokens = int(usage.get("input_tokens", 0))
                        elif event == "content_block_delta":
                            text = payload["delta"].get("text")
                            if text:
                                yield Delta(text)
                        elif event == "message_delta":
                            completion_tokens = int(
                                (payload.get("usage") or {}).get("output_tokens", 0)
                            )
                            reason = (payload.get("delta") or {}).get("stop_reason") or ""
                            finish = _FINISH.get(reason, finish)
                        elif event == "error":
                            raise UpstreamError(
                                "anthropic stream error",
                                retryable=True,
                                detail=redact(data, [self.api_key]),
                            )
                        elif event == "message_stop":
                            break
                    except (ValueError, KeyError, TypeError, AttributeError) as exc:
                        raise malformed(self.name, exc) from exc
        yield StreamEnd(Usage(prompt_tokens, completion_tokens), finish)

    async def aclose(self) -> None:
        """The shared HTTP client is owned by the registry."""
