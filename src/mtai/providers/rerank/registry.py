"""The reranker this deployment offers, if any, built from the settings."""

from __future__ import annotations

from mtai.config import RerankProvider, Settings
from mtai.errors import ConfigurationError
from mtai.providers.rerank.base import Reranker
from mtai.providers.rerank.bedrock import BedrockReranker
from mtai.providers.rerank.cohere_compat import CohereReranker


def reranker_from(settings: Settings) -> Reranker | None:
    if settings.rerank_provider is RerankProvider.NONE:
        return None
    if settings.rerank_provider is RerankProvider.BEDROCK:
        return BedrockReranker(
            settings.rerank_model,
            region=settings.rerank_bedrock_region,
            endpoint_url=settings.rerank_bedrock_endpoint_url,
        )
    if not settings.rerank_base_url:
        raise ConfigurationError(
            "MTAI_RERANK_PROVIDER is cohere but MTAI_RERANK_BASE_URL is not set: set it to the "
            "endpoint's URL before /rerank (e.g. https://api.cohere.com/v2)."
        )
    key = settings.rerank_api_key
    return CohereReranker(
        settings.rerank_base_url,
        key.get_secret_value() if key is not None else None,
        settings.rerank_model,
    )
