"""The official `openai` SDK, sync and async, streaming and not, against our /v1 over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import time
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from mtai.runtime import Runtime
from tests.conftest import TenantFixture, add_model
from tests.integration.test_gateway import cost, usage_row
from tests.support.fake_upstreams import Behaviour, FakeUpstream


async def post(url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(url, **kwargs)


async def test_sync_client_non_stream_and_stream(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "anthropic")
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text="Hi there, friend.", prompt_tokens=9, completion_tokens=4),
    )
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text="Hi there, friend.", prompt_tokens=9, completion_tokens=4),
    )
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text="Hi there, friend.", prompt_tokens=9, completion_tokens=4),
    )

    def run() -> tuple[
        openai.types.chat.ChatCompletion, list[openai.types.chat.ChatCompletionChunk]
    ]:
        client = openai.OpenAI(base_url=f"{live_server}/v1", api_key=tenant_a.key, max_retries=0)
        completion = client.chat.completions.create(
            model=spec.name, messages=[{"role": "user", "content": "hello"}], max_tokens=20
        )
        chunks = list(
            client.chat.completions.create(
                model=spec.name,
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        return completion, chunks

    completion, chunks = await asyncio.to_thread(run)
    assert completion.choices[0].message.content == "Hi there, friend."
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 4)
    assert completion.model == spec.name
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hi there, friend."
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 13
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]


async def test_async_client_and_no_usage_chunk_unless_asked(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "bedrock")
    client = openai.AsyncOpenAI(base_url=f"{live_server}/v1", api_key=tenant_a.key, max_retries=0)
    completion = await client.chat.completions.create(
        model=spec.name,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
    )
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.id.startswith("chatcmpl-")
    row = await usage_row(runtime, completion.id.removeprefix("chatcmpl-"))
    assert (row.api, row.cost_usd) == ("openai", cost(20, 7))
    stream = await client.chat.completions.create(
        model=spec.name, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the fake upstream."
    )
    models = await client.models.list()
    assert spec.name in {m.id for m in models.data}
    await client.close()


async def test_errors_arrive_as_the_sdks_exceptions(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{live_server}/v1", api_key=tenant_a.key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.code == "model_not_found"
    assert "does not exist" in missing.value.message
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            base_url=f"{live_server}/v1", api_key="mtai_wrong", max_retries=0
        ).models.list()
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="extractive", messages=[{"role": "user", "content": "hi"}], temperature=5
        )
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="extractive", messages=[{"role": "user", "content": "hi"}], n=2
        )
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    fake_upstream.script(spec.upstream_model, Behaviour(kind="500"))
    with pytest.raises(openai.APIStatusError) as upstream:
        await client.chat.completions.create(
            model=spec.name, messages=[{"role": "user", "content": "hi"}]
        )
    assert upstream.value.status_code == 502
    raw = await post(
        f"{live_server}/v1/chat/completions",
        json={"model": "x"},
        headers={"Authorization": f"Bearer {tenant_a.key}"},
    )
    assert raw.status_code == 400
    assert set(raw.json()["error"]) == {"message", "type", "param", "code"}
    await client.close()


async def test_client_disconnect_stops_upstream_and_charges_what_was_generated(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(kind="slow", text="word " * 6, delay=0.2, completion_tokens=200),
    )
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "POST",
            f"{live_server}/v1/chat/completions",
            json={
                "model": spec.name,
                "messages": [{"role": "user", "content": "talk"}],
                "stream": True,
            },
            headers={"Authorization": f"Bearer {tenant_a.key}"},
        ) as response,
    ):
        request_id = response.headers["x-request-id"]
        received = 0
        async for line in response.aiter_lines():
            if '"content":"word' in line.replace(" ", ""):
                received += 1
            if received >= 3:
                break
    deadline = time.monotonic() + 5
    while spec.upstream_model not in fake_upstream.cancelled:
        assert time.monotonic() < deadline, "the upstream stream was not stopped"
        await asyncio.sleep(0.05)
    row = await usage_row(runtime, request_id)
    assert row.status == "cancelled"
    assert 3 <= row.completion_tokens < 200
    assert row.cost_usd == cost(row.prompt_tokens, row.completion_tokens)
    assert row.cost_usd > 0


async def test_embeddings_float_and_base64(live_server: str, tenant_a: TenantFixture) -> None:
    client = openai.AsyncOpenAI(base_url=f"{live_server}/v1", api_key=tenant_a.key, max_retries=0)
    result = await client.embeddings.create(
        model="all-MiniLM-L6-v2", input=["a cat sat", "a dog ran"]
    )  # base64 by default
    assert [len(d.embedding) for d in result.data] == [384, 384]
    assert result.usage.prompt_tokens > 0
    vector = np.array(result.data[0].embedding)
    assert abs(np.linalg.norm(vector) - 1) < 1e-4
    floats = (
        await post(
            f"{live_server}/v1/embeddings",
            json={"model": "all-MiniLM-L6-v2", "input": "a cat sat", "encoding_format": "float"},
            headers={"Authorization": f"Bearer {tenant_a.key}"},
        )
    ).json()
    assert np.allclose(floats["data"][0]["embedding"], vector, atol=1e-6)
    encoded = (
        await post(
            f"{live_server}/v1/embeddings",
            json={"model": "all-MiniLM-L6-v2", "input": "a cat sat", "encoding_format": "base64"},
            headers={"Authorization": f"Bearer {tenant_a.key}"},
        )
    ).json()["data"][0]["embedding"]
    assert np.allclose(np.frombuffer(base64.b64decode(encoded), dtype="<f4"), vector, atol=1e-6)
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="text-embedding-3-large", input="x")
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="all-MiniLM-L6-v2", input="   ")
    await client.close()


async def test_cost_precision_matches_catalog(
    runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    spec = await add_model(
        runtime,
        fake_upstream,
        "openai",
        input_price_per_1m=Decimal("0.150000"),
        output_price_per_1m=Decimal("0.600000"),
    )
    # 1,234,567 x $0.15/M + 89 x $0.60/M = $0.18518505 + $0.0000534, exactly.
    assert spec.cost(1_234_567, 89) == Decimal("0.18523845")
