"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, LM Studio, any base_url)."""

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
    Usage,
)
from mtai.providers.llm.http import malformed, raise_for_status, transport_errors
from mtai.providers.llm.sse import events


def _usage(body: dict[str, Any] | None) -> Usage | None:
    if not body:
        return None
    return Usage(int(body.get("prompt_tokens", 0)), int(body.get("completion_tokens", 0)))


SUPPORT = table(temperature=Support.NATIVE)


class OpenAICompatProvider:
    name = "openai"
    support = SUPPORT

    def __init__(self, base_url: str, api_key: str | None, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client

    def _body(self, request: CompletionRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "stream": stream,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, request: CompletionRequest) -> Completion:
        with transport_errors():
            response = await self.client.post(
                f"{self.base_url}/chat/completions",
                json=self._body(request, False),
                headers=self.headers,
            )
            await raise_for_status(response)
        try:
            body = response.json()
            choice = body["choices"][0]
            return Completion(
                text=choice["message"].get("content") or "",
                usage=_usage(body.get("usage")),
                finish_reason=choice.get("finish_reason") or "stop",
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise malformed(self.name, exc) from exc

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        finish, usage = "stop", None
        with transport_errors():
            async with self.client.stream(
                "POST",
                f"{self.base_url}/chat/completions",
                json=self._body(request, True),
                headers=self.headers,
            ) as response:
                await raise_for_status(response)
                async for _event, data in events(response):
                    if data.strip() == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                        usage = _usage(chunk.get("usage")) or usage
                        for choice in chunk.get("choices") or []:
                            content = (choice.get("delta") or {}).get("content")
                            if content:
                                yield Delta(content)
                            finish = choice.get("finish_reason") or finish
                    except (ValueError, AttributeError, TypeError) as exc:
                        raise malformed(self.name, exc) from exc
        yield StreamEnd(usage, finish)

    async def aclose(self) -> None:
        """The shared HTTP client is owned by the registry."""
