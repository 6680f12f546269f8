"""Builds and reuses provider adapters; owns the shared HTTP client they send through."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import httpx

from mtai.providers.llm.anthropic import AnthropicProvider
from mtai.providers.llm.base import LLMProvider
from mtai.providers.llm.bedrock import BedrockProvider
from mtai.providers.llm.extractive import ExtractiveProvider
from mtai.providers.llm.local_llama import LocalLlamaProvider
from mtai.providers.llm.openai_compat import OpenAICompatProvider

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to call a provider; secrets stay out of repr."""

    provider: str
    base_url: str | None
    api_key: str | None
    region: str | None
    context_window: int
    timeout: float

    def cache_key(self) -> str:
        secret = hashlib.sha256((self.api_key or "").encode()).hexdigest()[:16]
        return f"{self.provider}|{self.base_url}|{self.region}|{secret}"

    def __repr__(self) -> str:
        return f"Endpoint({self.provider}, {self.base_url or self.region or ''})"


class ProviderRegistry:
    def __init__(self, *, local_model_path: Path | None = None, local_threads: int = 2) -> None:
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(300.0, connect=10.0),
            limits=httpx.Limits(max_connections=500, max_keepalive_connections=100),
        )
        self.local_model_path = local_model_path
        self.local_threads = local_threads
        self._providers: dict[str, LLMProvider] = {}

    def get(self, endpoint: Endpoint) -> LLMProvider:
        key = endpoint.cache_key()
        provider = self._providers.get(key)
        if provider is None:
            provider = self._build(endpoint)
            self._providers[key] = provider
        return provider

    def _build(self, e: Endpoint) -> LLMProvider:
        if e.provider == "openai":
            return OpenAICompatProvider(
                e.base_url or DEFAULT_BASE_URLS["openai"], e.api_key, self.http
            )
        if e.provider == "anthropic":
            return AnthropicProvider(
                e.base_url or DEFAULT_BASE_URLS["anthropic"], e.api_key, self.http
            )
        if e.provider == "bedrock":
            access, _, secret = (e.api_key or "").partition(":")
            return BedrockProvider(
                e.region or "us-east-1",
                endpoint_url=e.base_url,
                access_key=access or None,
                secret_key=secret or None,
                timeout=e.timeout,
            )
        if e.provider == "local":
            return LocalLlamaProvider(
                self.local_model_path, context_window=e.context_window, threads=self.local_threads
            )
        if e.provider == "extractive":
            return ExtractiveProvider()
        raise ValueError(f"unknown provider {e.provider!r}")

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
        await self.http.aclose()
