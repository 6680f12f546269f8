"""The remote embedders against the fake upstreams, the registry, and the shared protocol."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mtai.config import Settings
from mtai.errors import ConfigurationError, InvalidInput
from mtai.providers.embeddings.base import Embedder, EmbeddingError
from mtai.providers.embeddings.bedrock import BedrockEmbedder
from mtai.providers.embeddings.minilm import MiniLMEmbedder
from mtai.providers.embeddings.multilingual_e5 import MultilingualE5Embedder
from mtai.providers.embeddings.openai_compat import OpenAIEmbedder
from mtai.providers.embeddings.registry import EmbedderRegistry
from mtai.services import tokenizer
from tests.support.fake_upstreams import Behaviour, FakeUpstream, embedding_vector

API_KEY = "sk-test-embedding-key-0123456789"
TITAN = "amazon.titan-embed-text-v2:0"
TEXTS = [f"passage number {i} about topic {i % 3}" for i in range(7)]


@pytest.fixture
def fake(fake_upstream: FakeUpstream) -> FakeUpstream:
    fake_upstream.reset()
    return fake_upstream


@pytest.fixture
async def openai_embedder(fake: FakeUpstream) -> AsyncIterator[OpenAIEmbedder]:
    embedder = OpenAIEmbedder(f"{fake.base_url}/v1", API_KEY, "emb", fake.embedding_dim)
    yield embedder
    await embedder.aclose()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy keys through the environment, the first link of the AWS chain the embedder uses."""
    _no_aws_chain(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")


def _no_aws_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Nothing of the developer's own AWS setup (profiles, instance metadata) may leak in.
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def bedrock_embedder(fake: FakeUpstream, dimension: int = 256, **kwargs: Any) -> BedrockEmbedder:
    return BedrockEmbedder(
        TITAN, dimension, region="us-east-1", endpoint_url=fake.base_url, **kwargs
    )


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"_env_file": None, **overrides}
    return Settings(**values)


def assert_unit_rows(
    vectors: np.ndarray[Any, np.dtype[np.float32]], shape: tuple[int, int]
) -> None:
    assert vectors.shape == shape
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- protocol


def test_every_embedder_satisfies_the_protocol(fake: FakeUpstream) -> None:
    local: Embedder = MiniLMEmbedder()
    remote: list[Embedder] = [
        OpenAIEmbedder(f"{fake.base_url}/v1", None, "text-embedding-3-small", 1536),
        bedrock_embedder(fake),
    ]
    assert isinstance(local, Embedder)
    assert all(isinstance(e, Embedder) for e in remote)
    assert (local.name, local.dimension, local.max_tokens) == ("all-MiniLM-L6-v2", 384, 256)
    assert local.batch_size >= 1
    assert [e.name for e in remote] == ["openai/text-embedding-3-small", f"bedrock/{TITAN}"]
    assert [e.max_tokens for e in remote] == [8191, 8192]
    assert [e.batch_size for e in remote] == [128, 32]


async def test_minilm_aclose_is_harmless() -> None:
    embedder = MiniLMEmbedder()
    await embedder.aclose()
    assert embedder.count_tokens("hello world") == 4  # [CLS] hello world [SEP]


def test_embedding_error_is_a_502() -> None:
    error = EmbeddingError("x")
    assert (error.status_code, error.code) == (502, "embedding_failed")


# --------------------------------------------------------------------------- OpenAI-compatible


async def test_openai_batches_keep_input_order(
    fake: FakeUpstream, openai_embedder: OpenAIEmbedder
) -> None:
    openai_embedder.batch_size = 3
    vectors = await openai_embedder.aembed(TEXTS)
    assert_unit_rows(vectors, (len(TEXTS), fake.embedding_dim))
    for row, text in zip(vectors, TEXTS, strict=True):
        np.testing.assert_allclose(row, fake.embed(text), atol=1e-6)
    requests = fake.requests
    assert [r.json["input"] for r in requests] == [TEXTS[0:3], TEXTS[3:6], TEXTS[6:7]]
    for recorded in requests:
        assert recorded.path == "/v1/embeddings"
        assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
        assert recorded.json["model"] == "emb"
        assert recorded.json["encoding_format"] == "float"
        assert "dimensions" not in recorded.json


async def test_openai_orders_results_by_index(openai_embedder: OpenAIEmbedder) -> None:
    def reversed_answer(request: httpx.Request) -> httpx.Response:
        inputs = json.loads(request.content)["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": embedding_vector(text, 8)}
            for i, text in enumerate(inputs)
        ]
        return httpx.Response(200, json={"object": "list", "data": data[::-1]})

    await openai_embedder.aclose()
    # The real client, with its transport swapped for one that answers in reverse order.
    openai_embedder._client = httpx.AsyncClient(transport=httpx.MockTransport(reversed_answer))
    vectors = await openai_embedder.aembed(["a", "b", "c"])
    for row, text in zip(vectors, ["a", "b", "c"], strict=True):
        np.testing.assert_allclose(row, embedding_vector(text, 8), atol=1e-6)


async def test_openai_empty_input_makes_no_request(
    fake: FakeUpstream, openai_embedder: OpenAIEmbedder
) -> None:
    assert (await openai_embedder.aembed([])).shape == (0, fake.embedding_dim)
    assert fake.requests == []


def test_openai_counts_cl100k_tokens(openai_embedder: OpenAIEmbedder) -> None:
    text = "Tokenisation of embeddings inputs, counted offline."
    assert openai_embedder.count_tokens(text) == tokenizer.count(text) > 0


async def test_openai_dimension_mismatch(fake: FakeUpstream) -> None:
    embedder = OpenAIEmbedder(f"{fake.base_url}/v1", API_KEY, "emb", 16)
    try:
        with pytest.raises(EmbeddingError, match="8-dimensional vectors, not 16") as caught:
            await embedder.aembed(["x"])
    finally:
        await embedder.aclose()
    assert "MTAI_EMBEDDING_OPENAI_DIMENSION" in caught.value.detail
    assert fake.count("emb") == 1  # a wrong size is not retried


async def test_openai_retries_429(fake: FakeUpstream, openai_embedder: OpenAIEmbedder) -> None:
    fake.script("emb", Behaviour(kind="429"))
    vectors = await openai_embedder.aembed(["alpha", "beta"])
    assert_unit_rows(vectors, (2, fake.embedding_dim))
    assert fake.count("emb") == 2


async def test_openai_persistent_500(fake: FakeUpstream, openai_embedder: OpenAIEmbedder) -> None:
    fake.script("emb", *[Behaviour(kind="500")] * 3)
    with pytest.raises(EmbeddingError) as caught:
        await openai_embedder.aembed(["alpha"])
    message = caught.value.detail
    assert "openai/emb" in message
    assert "after 3 attempts" in message
    assert "500" in message
    assert "retry later" in message
    assert API_KEY not in message
    assert fake.count("emb") == 3


async def test_openai_bad_key_is_not_retried(fake: FakeUpstream) -> None:
    embedder = OpenAIEmbedder(f"{fake.base_url}/v1", None, "emb", fake.embedding_dim)
    try:
        with pytest.raises(EmbeddingError, match="MTAI_EMBEDDING_OPENAI_API_KEY"):
            await embedder.aembed(["x"])
    finally:
        await embedder.aclose()
    assert fake.count("emb") == 1


async def test_openai_malformed_answer(fake: FakeUpstream, openai_embedder: OpenAIEmbedder) -> None:
    fake.script("emb", Behaviour(kind="malformed"))
    with pytest.raises(EmbeddingError, match="malformed"):
        await openai_embedder.aembed(["x"])
    assert fake.count("emb") == 1


async def test_openai_unreachable_endpoint() -> None:
    with socket.socket() as sock:  # a port nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    embedder = OpenAIEmbedder(f"http://user:pw@127.0.0.1:{port}/v1", API_KEY, "emb", 8)
    try:
        with pytest.raises(EmbeddingError, match="MTAI_EMBEDDING_OPENAI_BASE_URL") as caught:
            await embedder.aembed(["x"])
    finally:
        await embedder.aclose()
    assert f"http://127.0.0.1:{port}/v1" in caught.value.detail
    assert "pw" not in caught.value.detail


# --------------------------------------------------------------------------- Bedrock


@pytest.mark.usefixtures("aws_credentials")
async def test_bedrock_embeds_concurrently_in_order(fake: FakeUpstream) -> None:
    embedder = bedrock_embedder(fake)
    texts = [f"text {i}" for i in range(20)]
    try:
        vectors = await embedder.aembed(texts)
    finally:
        await embedder.aclose()
    assert_unit_rows(vectors, (20, 256))
    for row, text in zip(vectors, texts, strict=True):
        np.testing.assert_allclose(row, embedding_vector(text, 256), atol=1e-6)
    requests = fake.requests
    assert len(requests) == 20
    assert {r.path for r in requests} == {f"/model/{TITAN}/invoke"}
    assert {r.model for r in requests} == {TITAN}
    assert sorted(r.json["inputText"] for r in requests) == sorted(texts)
    assert all(r.json["dimensions"] == 256 and r.json["normalize"] is True for r in requests)
    assert all(r.headers["authorization"].startswith("AWS4-HMAC-SHA256") for r in requests)


@pytest.mark.usefixtures("aws_credentials")
async def test_bedrock_bounds_concurrency(fake: FakeUpstream) -> None:
    delay = 0.3
    fake.script(TITAN, *[Behaviour(kind="slow", delay=delay)] * 16)
    embedder = bedrock_embedder(fake)
    started = time.monotonic()
    try:
        await embedder.aembed([f"t{i}" for i in range(16)])
    finally:
        await embedder.aclose()
    elapsed = time.monotonic() - started
    # 16 calls, 8 at a time: two rounds of `delay`, far from the 16 of one call at a time.
    assert 2 * delay <= elapsed < 8 * delay


@pytest.mark.usefixtures("aws_credentials")
async def test_bedrock_retries_throttling(fake: FakeUpstream) -> None:
    fake.script(TITAN, Behaviour(kind="429"))
    embedder = bedrock_embedder(fake)
    try:
        vectors = await embedder.aembed(["one"])
    finally:
        await embedder.aclose()
    assert_unit_rows(vectors, (1, 256))
    assert fake.count(TITAN) == 2


@pytest.mark.usefixtures("aws_credentials")
async def test_bedrock_persistent_500(fake: FakeUpstream) -> None:
    fake.script(TITAN, *[Behaviour(kind="500")] * 3)
    embedder = bedrock_embedder(fake)
    try:
        with pytest.raises(EmbeddingError) as caught:
            await embedder.aembed(["one"])
    finally:
        await embedder.aclose()
    message = caught.value.detail
    assert "InternalServerException" in message
    assert "after 3 attempts" in message
    assert "secret" not in message
    assert fake.count(TITAN) == 3


@pytest.mark.usefixtures("aws_credentials")
async def test_bedrock_persistent_throttling_explains_the_quota(fake: FakeUpstream) -> None:
    fake.script(TITAN, *[Behaviour(kind="429")] * 2)
    embedder = bedrock_embedder(fake, retries=1)
    try:
        with pytest.raises(EmbeddingError, match="quota"):
            await embedder.aembed(["one"])
    finally:
        await embedder.aclose()
    assert fake.count(TITAN) == 2


@pytest.mark.usefixtures("aws_credentials")
async def test_bedrock_validation_error_names_the_settings(fake: FakeUpstream) -> None:
    embedder = bedrock_embedder(fake, dimension=100)
    try:
        with pytest.raises(EmbeddingError, match="ValidationException") as caught:
            await embedder.aembed(["one", "two"])
    finally:
        await embedder.aclose()
    assert "MTAI_EMBEDDING_BEDROCK_DIMENSION" in caught.value.detail
    assert fake.count(TITAN) <= 2  # not retried; the other call may have been cancelled


@pytest.mark.usefixtures("aws_credentials")
async def test_bedrock_malformed_answer(fake: FakeUpstream) -> None:
    fake.script(TITAN, Behaviour(kind="malformed"))
    embedder = bedrock_embedder(fake)
    try:
        with pytest.raises(EmbeddingError, match="malformed"):
            await embedder.aembed(["one"])
    finally:
        await embedder.aclose()


async def test_bedrock_without_credentials(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_aws_chain(monkeypatch, tmp_path)
    embedder = bedrock_embedder(fake)
    try:
        with pytest.raises(EmbeddingError, match="no AWS credentials"):
            await embedder.aembed(["one"])
    finally:
        await embedder.aclose()
    assert fake.requests == []


def test_bedrock_count_tokens_is_a_cl100k_estimate(fake: FakeUpstream) -> None:
    assert bedrock_embedder(fake).count_tokens("hello there") == tokenizer.count("hello there")


# --------------------------------------------------------------------------- registry


def test_registry_has_the_local_models_by_default() -> None:
    registry = EmbedderRegistry(settings())
    assert registry.names() == ["all-MiniLM-L6-v2", "multilingual-e5-small"]
    assert registry.default_name == "all-MiniLM-L6-v2"
    local = registry.get("all-MiniLM-L6-v2")
    assert isinstance(local, MiniLMEmbedder)
    assert registry.get("all-MiniLM-L6-v2") is local  # built once, shared
    multilingual = registry.get("multilingual-e5-small")
    assert isinstance(multilingual, MultilingualE5Embedder)
    assert (multilingual.query_prefix, multilingual.passage_prefix) == ("query: ", "passage: ")


def test_registry_shares_a_given_local_model() -> None:
    local = MiniLMEmbedder()
    assert EmbedderRegistry(settings(), local=local).get("all-MiniLM-L6-v2") is local


async def test_registry_offers_the_configured_upstreams(fake: FakeUpstream) -> None:
    registry = EmbedderRegistry(
        settings(
            embedding_openai_base_url=f"{fake.base_url}/v1",
            embedding_openai_api_key=API_KEY,
            embedding_openai_model="emb",
            embedding_openai_dimension=fake.embedding_dim,
            embedding_bedrock_model=TITAN,
            embedding_bedrock_dimension=512,
            embedding_bedrock_region="eu-west-1",
            embedding_model="openai/emb",
        )
    )
    try:
        assert registry.names() == [
            "all-MiniLM-L6-v2",
            "multilingual-e5-small",
            "openai/emb",
            f"bedrock/{TITAN}",
        ]
        assert registry.default_name == "openai/emb"
        openai = registry.get("openai/emb")
        assert isinstance(openai, OpenAIEmbedder)
        assert_unit_rows(await openai.aembed(["x"]), (1, fake.embedding_dim))
        assert fake.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
        bedrock = registry.get(f"bedrock/{TITAN}")
        assert isinstance(bedrock, BedrockEmbedder)
        assert (bedrock.dimension, bedrock.region) == (512, "eu-west-1")
    finally:
        await registry.aclose()


def test_registry_rejects_an_unknown_model() -> None:
    registry = EmbedderRegistry(settings())
    with pytest.raises(InvalidInput, match="all-MiniLM-L6-v2") as caught:
        registry.get("openai/text-embedding-3-large")
    assert "openai/text-embedding-3-large" in caught.value.detail


def test_registry_validates_the_default() -> None:
    with pytest.raises(ConfigurationError, match="MTAI_EMBEDDING_OPENAI_BASE_URL"):
        EmbedderRegistry(settings(embedding_model="openai/text-embedding-3-small"))
    with pytest.raises(ConfigurationError, match="bedrock/other"):
        EmbedderRegistry(settings(embedding_bedrock_model=TITAN, embedding_model="bedrock/other"))


async def test_registry_takes_explicit_embedders(fake: FakeUpstream) -> None:
    embedder = OpenAIEmbedder(f"{fake.base_url}/v1", API_KEY, "emb", fake.embedding_dim)
    registry = EmbedderRegistry(settings(embedding_model="openai/emb"), {"openai/emb": embedder})
    assert registry.names() == ["openai/emb"]
    assert registry.get("openai/emb") is embedder
    with pytest.raises(InvalidInput):
        registry.get("all-MiniLM-L6-v2")
    await registry.aclose()
    with pytest.raises(RuntimeError):  # the registry owns what it was given, and closed it
        await embedder.aembed(["x"])
    with pytest.raises(ValueError, match="registered as"):
        EmbedderRegistry(settings(embedding_model="x"), {"x": embedder})
