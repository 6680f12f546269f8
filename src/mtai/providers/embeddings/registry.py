"""The embedding models this deployment offers, by the name a knowledge base records."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mtai.config import Settings
from mtai.errors import ConfigurationError, InvalidInput
from mtai.providers.embeddings.base import Embedder
from mtai.providers.embeddings.bedrock import BedrockEmbedder
from mtai.providers.embeddings.minilm import MiniLMEmbedder
from mtai.providers.embeddings.minilm_onnx import OnnxMiniLMEmbedder
from mtai.providers.embeddings.multilingual_e5 import (
    MultilingualE5Embedder,
    multilingual_e5_installed,
)
from mtai.providers.embeddings.openai_compat import OpenAIEmbedder


def _factories(settings: Settings, local: Embedder | None) -> dict[str, Callable[[], Embedder]]:
    factories: dict[str, Callable[[], Embedder]] = {
        MiniLMEmbedder.name: (lambda: local) if local is not None else OnnxMiniLMEmbedder
    }
    if multilingual_e5_installed():
        factories[MultilingualE5Embedder.name] = MultilingualE5Embedder
    base_url = settings.embedding_openai_base_url
    if base_url:
        key = settings.embedding_openai_api_key
        api_key = key.get_secret_value() if key is not None else None
        model, dimension = settings.embedding_openai_model, settings.embedding_openai_dimension
        factories[f"openai/{model}"] = lambda: OpenAIEmbedder(
            base_url,
            api_key,
            model,
            dimension,
            query_prefix=settings.embedding_openai_query_prefix,
            passage_prefix=settings.embedding_openai_passage_prefix,
        )
    model_id = settings.embedding_bedrock_model
    if model_id:
        factories[f"bedrock/{model_id}"] = lambda: BedrockEmbedder(
            model_id,
            settings.embedding_bedrock_dimension,
            region=settings.embedding_bedrock_region,
            endpoint_url=settings.embedding_bedrock_endpoint_url,
        )
    return factories


class EmbedderRegistry:
    """Embedders built on first use and shared from then on; the registry closes them.

    Built from `settings`: the local all-MiniLM-L6-v2 always (or `local`, an instance to share)
    and the local multilingual-e5-small where its package is installed,
    "openai/<model>" when an OpenAI-compatible endpoint is configured, "bedrock/<model id>"
    when a Bedrock model is. `embedders` replaces all of that (tests); it is keyed by name.
    """

    def __init__(
        self,
        settings: Settings,
        embedders: Mapping[str, Embedder] | None = None,
        *,
        local: Embedder | None = None,
    ) -> None:
        self._built: dict[str, Embedder] = {}
        self._factories: dict[str, Callable[[], Embedder]] = {}
        if embedders is not None:
            for name, embedder in embedders.items():
                if name != embedder.name:
                    raise ValueError(f"embedder {embedder.name!r} registered as {name!r}")
            self._built = dict(embedders)
            self._names = list(embedders)
        else:
            self._factories = _factories(settings, local)
            self._names = list(self._factories)
        if settings.embedding_model not in self._names:
            raise ConfigurationError(
                f"MTAI_EMBEDDING_MODEL is {settings.embedding_model!r}, which is not available "
                f"(available: {', '.join(self._names)}). Set MTAI_EMBEDDING_OPENAI_BASE_URL to "
                "offer 'openai/<MTAI_EMBEDDING_OPENAI_MODEL>', or MTAI_EMBEDDING_BEDROCK_MODEL "
                "to offer 'bedrock/<model id>'."
            )
        self.default_name = settings.embedding_model

    def names(self) -> list[str]:
        return list(self._names)

    def get(self, name: str) -> Embedder:
        embedder = self._built.get(name)
        if embedder is None:
            factory = self._factories.get(name)
            if factory is None:
                raise InvalidInput(
                    f"Embedding model {name!r} is not available; choose one of: "
                    f"{', '.join(self._names)}."
                )
            embedder = self._built[name] = factory()
        return embedder

    async def aclose(self) -> None:
        """Closes the embedders built so far; meant for shutdown, after the last `get`."""
        for embedder in self._built.values():
            await embedder.aclose()
