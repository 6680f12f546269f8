"""Builds and reuses provider adapters; owns the HTTP clients they send through.

Two clients: one for the operator's own catalog URLs, and one, behind the egress guard, for
URLs a tenant chose. Adapters are cached per endpoint (provider, URL, key, owner) in a bounded
LRU; an evicted adapter is closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from mtai.providers.egress import EgressPolicy, guarded_client
from mtai.providers.llm.anthropic import AnthropicProvider
from mtai.providers.llm.base import LLMProvider
from mtai.providers.llm.bedrock import BedrockProvider
from mtai.providers.llm.capabilities import Support
from mtai.providers.llm.extractive import ExtractiveProvider
from mtai.providers.llm.local_llama import LocalLlamaProvider
from mtai.providers.llm.openai_compat import OpenAICompatProvider

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
# Each catalog provider's support table, for reading capabilities without building an adapter.
SUPPORT_BY_PROVIDER: dict[str, Mapping[str, Support]] = {
    "openai": OpenAICompatProvider.support,
    "anthropic": AnthropicProvider.support,
    "bedrock": BedrockProvider.support,
    "local": LocalLlamaProvider.support,
    "extractive": ExtractiveProvider.support,
}
_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
_LIMITS = httpx.Limits(max_connections=500, max_keepalive_connections=100)


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to call a provider; secrets stay out of repr.

    `owner` is the tenant whose own credential this is (None: the platform's). `tenant_url`
    says the base URL is one that tenant chose, so every call goes through the egress guard.
    """

    provider: str
    base_url: str | None
    api_key: str | None
    region: str | None
    context_window: int
    timeout: float
    owner: uuid.UUID | None = None
    tenant_url: bool = False

    def cache_key(self) -> str:
        secret = hashlib.sha256((self.api_key or "").encode()).hexdigest()[:16]
        owner = self.owner or "platform"
        return f"{owner}|{self.provider}|{self.base_url}|{self.region}|{secret}"

    def __repr__(self) -> str:
        return f"Endpoint({self.provider}, {self.base_url or self.region or ''})"


class ProviderRegistry:
    def __init__(
        self,
        *,
        egress: EgressPolicy | None = None,
        max_providers: int = 256,
        local_model_path: Path | None = None,
        local_threads: int = 2,
    ) -> None:
        self.egress = egress or EgressPolicy()
        self.http = httpx.AsyncClient(timeout=_TIMEOUT, limits=_LIMITS)
        self.guarded_http = guarded_client(self.egress, timeout=_TIMEOUT, limits=_LIMITS)
        self.local_model_path = local_model_path
        self.local_threads = local_threads
        self.max_providers = max_providers
        self._providers: OrderedDict[str, LLMProvider] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, endpoint: Endpoint) -> LLMProvider:
        key = endpoint.cache_key()
        provider = self._providers.get(key)
        if provider is not None:
            self._providers.move_to_end(key)
            return provider
        provider = self._providers[key] = self._build(endpoint)
        while len(self._providers) > self.max_providers:
            _, evicted = self._providers.popitem(last=False)
            task = asyncio.get_running_loop().create_task(evicted.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return provider

    def __len__(self) -> int:
        return len(self._providers)

    def _build(self, e: Endpoint) -> LLMProvider:
        http = self.guarded_http if e.tenant_url else self.http
        if e.provider == "openai":
            return OpenAICompatProvider(e.base_url or DEFAULT_BASE_URLS["openai"], e.api_key, http)
        if e.provider == "anthropic":
            return AnthropicProvider(e.base_url or DEFAULT_BASE_URLS["anthropic"], e.api_key, http)
        if e.provider == "bedrock":
            access, _, secret = (e.api_key or "").partition(":")
            return BedrockProvider(
                e.region or "us-east-1",
                endpoint_url=e.base_url,
                access_key=access or None,
                secret_key=secret or None,
                timeout=e.timeout,
                tenant_credential=e.owner is not None,
                egress=self.egress if e.tenant_url else None,
            )
        if e.provider == "local":
            return LocalLlamaProvider(
                self.local_model_path, context_window=e.context_window, threads=self.local_threads
            )
        if e.provider == "extractive":
            return ExtractiveProvider()
        raise ValueError(f"unknown provider {e.provider!r}")

    async def aclose(self) -> None:
        await asyncio.gather(*self._closing, return_exceptions=True)
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
        await self.http.aclose()
        await self.guarded_http.aclose()
