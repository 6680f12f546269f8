"""The fake upstreams speak each paid API faithfully enough for the official clients."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiobotocore.session
import anthropic
import httpx
import openai
import pytest
from botocore.config import Config
from botocore.eventstream import ChecksumMismatch
from botocore.exceptions import ClientError

from tests.support.fake_upstreams import Behaviour, FakeUpstream, split_text

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TEXT = "The quick brown fox jumps over the lazy dog again."


@pytest.fixture
def fake(fake_upstream: FakeUpstream) -> FakeUpstream:
    fake_upstream.reset()
    return fake_upstream


@pytest.fixture
async def oai(fake: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{fake.base_url}/v1", api_key="x", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def claude(fake: FakeUpstream) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="x", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def bedrock(fake: FakeUpstream) -> AsyncIterator[Any]:
    session = aiobotocore.session.get_session()
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=10)
    async with session.create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=fake.base_url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=config,
    ) as client:
        yield client


def test_split_text_keeps_every_character() -> None:
    for text in [TEXT, "two words", "x", "", "  lead and trail  ", "a b c d e f g h i j k l"]:
        pieces = split_text(text, 4)
        assert "".join(pieces) == text
        if len(text) >= 3:
            assert len(pieces) >= 3


def test_behaviour_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        Behaviour(kind="teapot")


# --------------------------------------------------------------------------- OpenAI


async def test_openai_chat_non_stream(fake: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    fake.script("gpt-a", Behaviour(text=TEXT, prompt_tokens=11, completion_tokens=5))
    result = await oai.chat.completions.create(
        model="gpt-a", messages=[{"role": "user", "content": "hi"}]
    )
    assert result.object == "chat.completion"
    assert result.model == "gpt-a"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == TEXT
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 5)
    assert result.usage.total_tokens == 16

    [recorded] = fake.requests
    assert recorded.protocol == "openai"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.model == "gpt-a"
    assert recorded.stream is False
    assert recorded.headers["authorization"] == "Bearer x"
    assert recorded.json["messages"] == [{"role": "user", "content": "hi"}]
    assert fake.count("gpt-a") == 1


async def test_openai_chat_stream_with_usage(fake: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    fake.script("gpt-s", Behaviour(text=TEXT, prompt_tokens=9, completion_tokens=4))
    stream = await oai.chat.completions.create(
        model="gpt-s",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(content) >= 3
    assert "".join(content) == TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert finishes.count("stop") == 1
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 9
    assert chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.total_tokens == 13
    assert fake.requests[0].stream is True


async def test_openai_stream_wire_format(fake: FakeUpstream) -> None:
    """Without include_usage there is no usage chunk; frames are `data: ...\\n\\n`, then DONE."""
    fake.script("gpt-w", Behaviour(text="one two three four", finish="length"))
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "gpt-w", "messages": [{"role": "user", "content": "x"}], "stream": True},
            headers={"Authorization": "Bearer k"},
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[-1] == ""
    assert frames[-2] == "data: [DONE]"
    payloads = [json.loads(f.removeprefix("data: ")) for f in frames[:-2]]
    assert all(f.startswith("data: ") for f in frames[:-1])
    assert all("usage" not in p for p in payloads)
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads)
    assert text == "one two three four"


async def test_openai_finish_length(fake: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    fake.script("gpt-l", Behaviour(finish="length"))
    result = await oai.chat.completions.create(
        model="gpt-l", messages=[{"role": "user", "content": "hi"}]
    )
    assert result.choices[0].finish_reason == "length"


async def test_openai_rate_limit_and_server_error(
    fake: FakeUpstream, oai: openai.AsyncOpenAI
) -> None:
    fake.script("gpt-e", Behaviour(kind="429"), Behaviour(kind="500"))
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.RateLimitError) as limited:
        await oai.chat.completions.create(model="gpt-e", messages=messages)
    assert limited.value.status_code == 429
    assert limited.value.response.headers["retry-after"] == "0"
    assert limited.value.type == "rate_limit_error"
    with pytest.raises(openai.InternalServerError) as failed:
        await oai.chat.completions.create(model="gpt-e", messages=messages, stream=True)
    assert failed.value.type == "server_error"
    # The script is used up: the next request gets the default behaviour.
    result = await oai.chat.completions.create(model="gpt-e", messages=messages)
    assert result.choices[0].message.content == Behaviour().text
    assert fake.count("gpt-e") == 3


async def test_openai_malformed_raises(fake: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    """The SDK surfaces a bad body as the JSON decoder's error, promptly (no hang)."""
    fake.script("gpt-m", Behaviour(kind="malformed"), Behaviour(kind="malformed"))
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(json.JSONDecodeError):
        await asyncio.wait_for(
            oai.chat.completions.create(model="gpt-m", messages=messages), timeout=5
        )
    with pytest.raises(json.JSONDecodeError):
        stream = await oai.chat.completions.create(model="gpt-m", messages=messages, stream=True)
        await asyncio.wait_for(_drain(stream), timeout=5)


async def _drain(stream: Any) -> list[Any]:
    return [item async for item in stream]


async def test_openai_requires_bearer(fake: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": "gpt-x", "messages": [{"role": "user"}]}
        )
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert fake.count("gpt-x") == 1  # recorded even though refused


async def test_openai_timeout_is_abandoned(fake: FakeUpstream) -> None:
    fake.script("gpt-t", Behaviour(kind="timeout", delay=5))
    async with openai.AsyncOpenAI(
        base_url=f"{fake.base_url}/v1", api_key="x", max_retries=0, timeout=0.3
    ) as client:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(
                model="gpt-t", messages=[{"role": "user", "content": "hi"}]
            )
        assert time.monotonic() - started < 3
    await _eventually(lambda: "gpt-t" in fake.cancelled)


async def test_openai_embeddings(fake: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    fake.script("emb", Behaviour(prompt_tokens=6))
    # The client asks for base64 by default and decodes it.
    result = await oai.embeddings.create(model="emb", input=["alpha", "beta"])
    assert result.object == "list"
    assert result.model == "emb"
    assert [d.index for d in result.data] == [0, 1]
    assert result.usage.prompt_tokens == 6
    assert result.usage.total_tokens == 6
    for item, text in zip(result.data, ["alpha", "beta"], strict=True):
        assert len(item.embedding) == 8
        assert math.isclose(math.sqrt(sum(v * v for v in item.embedding)), 1.0, rel_tol=1e-5)
        assert item.embedding == pytest.approx(fake.embed(text), abs=1e-6)
    assert result.data[0].embedding != pytest.approx(result.data[1].embedding)
    floats = await oai.embeddings.create(model="emb", input="alpha", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(fake.embed("alpha"), abs=1e-12)
    assert fake.requests[-1].json["encoding_format"] == "float"
    sized = await oai.embeddings.create(model="emb", input="alpha", dimensions=5)
    assert len(sized.data[0].embedding) == 5


async def test_openai_models(fake: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    fake.script("gpt-listed", Behaviour())
    models = [m.id async for m in oai.models.list()]
    assert "gpt-listed" in models


# --------------------------------------------------------------------------- Anthropic


async def test_anthropic_non_stream(fake: FakeUpstream, claude: anthropic.AsyncAnthropic) -> None:
    fake.script("claude-a", Behaviour(text=TEXT, prompt_tokens=12, completion_tokens=6))
    message = await claude.messages.create(
        model="claude-a",
        max_tokens=50,
        system="be brief",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.id.startswith("msg_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "claude-a"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 6)
    [recorded] = fake.requests
    assert recorded.protocol == "anthropic"
    # anthropic>=2 sends the key as a Bearer token; older SDKs (and our gateway) use x-api-key.
    assert "x" in (recorded.headers.get("x-api-key"), recorded.headers.get("authorization", "")[7:])
    assert "anthropic-version" in recorded.headers
    assert recorded.json["system"] == "be brief"
    assert recorded.stream is False


async def test_anthropic_stream_helper(
    fake: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake.script("claude-s", Behaviour(text=TEXT, prompt_tokens=3, completion_tokens=9))
    async with claude.messages.stream(
        model="claude-s", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(pieces) >= 3
    assert "".join(pieces) == TEXT
    assert final.content[0].text == TEXT
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 9)
    assert fake.requests[0].stream is True


async def test_anthropic_stream_events(
    fake: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    fake.script("claude-e", Behaviour(text=TEXT, finish="length", completion_tokens=50))
    stream = await claude.messages.create(
        model="claude-e",
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert "".join(deltas) == TEXT
    start = events[0]
    assert start.type == "message_start"
    assert start.message.usage.output_tokens == 1
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "max_tokens"
    assert delta.usage.output_tokens == 50


async def test_anthropic_wire_has_ping_and_event_names(fake: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        response = await http.post(
            "/v1/messages",
            json={
                "model": "claude-w",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "stream": True,
            },
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        )
    frames = [f for f in response.text.split("\n\n") if f]
    parsed = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        name = event_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        parsed.append(name)
    assert parsed[:3] == ["message_start", "content_block_start", "ping"]


async def test_anthropic_errors(fake: FakeUpstream, claude: anthropic.AsyncAnthropic) -> None:
    fake.script("claude-x", Behaviour(kind="429"), Behaviour(kind="500"), Behaviour("malformed"))
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.RateLimitError) as limited:
        await claude.messages.create(model="claude-x", max_tokens=5, messages=messages)
    assert limited.value.response.headers["retry-after"] == "0"
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.InternalServerError) as failed:
        await claude.messages.create(model="claude-x", max_tokens=5, messages=messages)
    assert failed.value.body["error"]["type"] == "api_error"
    with pytest.raises(json.JSONDecodeError):
        await asyncio.wait_for(
            claude.messages.create(model="claude-x", max_tokens=5, messages=messages), timeout=5
        )
    fake.script("claude-x", Behaviour("malformed"))
    with pytest.raises(json.JSONDecodeError):
        stream = await claude.messages.create(
            model="claude-x", max_tokens=5, messages=messages, stream=True
        )
        await asyncio.wait_for(_drain(stream), timeout=5)


async def test_anthropic_requires_headers(fake: FakeUpstream) -> None:
    body = {"model": "claude-h", "max_tokens": 5, "messages": []}
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        no_key = await http.post("/v1/messages", json=body)
        no_version = await http.post("/v1/messages", json=body, headers={"x-api-key": "k"})
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        bearer = await http.post(
            "/v1/messages",
            json={**body, "messages": [{"role": "user", "content": "x"}]},
            headers={"Authorization": "Bearer k", "anthropic-version": "2023-06-01"},
        )
    assert bearer.status_code == 200
    assert no_key.status_code == 401
    assert no_key.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "x-api-key header is required"},
    }
    assert no_version.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"


# --------------------------------------------------------------------------- Bedrock


async def test_bedrock_converse(fake: FakeUpstream, bedrock: Any) -> None:
    fake.script(BEDROCK_MODEL, Behaviour(text=TEXT, prompt_tokens=8, completion_tokens=3))
    response = await bedrock.converse(
        modelId=BEDROCK_MODEL,
        messages=[{"role": "user", "content": [{"text": "hi"}]}],
        system=[{"text": "be brief"}],
        inferenceConfig={"maxTokens": 50},
    )
    assert response["output"]["message"] == {"role": "assistant", "content": [{"text": TEXT}]}
    assert response["stopReason"] == "end_turn"
    assert response["usage"] == {"inputTokens": 8, "outputTokens": 3, "totalTokens": 11}
    assert response["metrics"]["latencyMs"] >= 1
    [recorded] = fake.requests
    assert recorded.protocol == "bedrock"
    assert recorded.model == BEDROCK_MODEL
    assert recorded.path == f"/model/{BEDROCK_MODEL}/converse"
    assert "%3A" in recorded.raw_path
    assert recorded.headers["authorization"].startswith("AWS4-HMAC-SHA256")
    assert recorded.json["inferenceConfig"] == {"maxTokens": 50}
    assert recorded.stream is False


async def test_bedrock_converse_stream(fake: FakeUpstream, bedrock: Any) -> None:
    fake.script(
        BEDROCK_MODEL, Behaviour(text=TEXT, prompt_tokens=5, completion_tokens=2, finish="length")
    )
    response = await bedrock.converse_stream(
        modelId=BEDROCK_MODEL,
        messages=[{"role": "user", "content": [{"text": "hi"}]}],
        inferenceConfig={"maxTokens": 50},
    )
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == (
        "application/vnd.amazon.eventstream"
    )
    events = [event async for event in response["stream"]]
    names = [next(iter(event)) for event in events]
    assert names[0] == "messageStart"
    assert names[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert events[0]["messageStart"] == {"role": "assistant"}
    deltas = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    assert len(deltas) >= 3
    assert "".join(deltas) == TEXT
    assert events[-2]["messageStop"]["stopReason"] == "max_tokens"
    assert events[-1]["metadata"]["usage"] == {
        "inputTokens": 5,
        "outputTokens": 2,
        "totalTokens": 7,
    }
    assert "latencyMs" in events[-1]["metadata"]["metrics"]
    assert fake.requests[0].stream is True


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [("429", "ThrottlingException", 429), ("500", "InternalServerException", 500)],
)
async def test_bedrock_errors(
    fake: FakeUpstream, bedrock: Any, kind: str, code: str, status: int
) -> None:
    fake.script(BEDROCK_MODEL, Behaviour(kind=kind), Behaviour(kind=kind))
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    with pytest.raises(ClientError) as caught:
        await bedrock.converse(modelId=BEDROCK_MODEL, messages=messages)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as streamed:
        await bedrock.converse_stream(modelId=BEDROCK_MODEL, messages=messages)
    assert streamed.value.response["Error"]["Code"] == code
    assert fake.count(BEDROCK_MODEL) == 2  # botocore did not retry


async def test_bedrock_validation_error(fake: FakeUpstream, bedrock: Any) -> None:
    with pytest.raises(ClientError) as caught:
        await bedrock.converse(modelId=BEDROCK_MODEL, messages=[])
    assert caught.value.response["Error"]["Code"] == "ValidationException"


async def test_bedrock_malformed(fake: FakeUpstream, bedrock: Any) -> None:
    fake.script(BEDROCK_MODEL, Behaviour(kind="malformed"), Behaviour(kind="malformed"))
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    # botocore turns an unparsable JSON body into {"message": <body>}: no "output" key.
    response = await bedrock.converse(modelId=BEDROCK_MODEL, messages=messages)
    assert "output" not in response
    streamed = await bedrock.converse_stream(modelId=BEDROCK_MODEL, messages=messages)
    with pytest.raises(ChecksumMismatch):
        await asyncio.wait_for(_drain(streamed["stream"]), timeout=5)


async def test_bedrock_requires_sigv4(fake: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        response = await http.post(
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            json={"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
        )
    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"] == "UnrecognizedClientException"
    assert "message" in response.json()
    assert fake.requests[0].model == BEDROCK_MODEL


# --------------------------------------------------------------------------- streaming control


async def test_slow_stream_repeats_to_completion_tokens(fake: FakeUpstream) -> None:
    fake.script("gpt-r", Behaviour(kind="slow", text="a b", delay=0.01, completion_tokens=10))
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "gpt-r", "messages": [{"role": "user", "content": "x"}], "stream": True},
            headers={"Authorization": "Bearer k"},
        )
    payloads = [
        json.loads(f.removeprefix("data: "))
        for f in response.text.split("\n\n")
        if f.startswith("data: {")
    ]
    content = [p["choices"][0]["delta"].get("content") for p in payloads]
    assert len([c for c in content if c]) == 10
    assert fake.cancelled == []


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "bedrock"])
async def test_client_disconnect_stops_stream(fake: FakeUpstream, protocol: str) -> None:
    slow = Behaviour(kind="slow", delay=0.2, completion_tokens=200)
    user = {"role": "user", "content": "x"}
    body: dict[str, Any]
    if protocol == "openai":
        model, path = "gpt-d", "/v1/chat/completions"
        body = {"model": model, "messages": [user], "stream": True}
        headers = {"Authorization": "Bearer k"}
    elif protocol == "anthropic":
        model, path = "claude-d", "/v1/messages"
        body = {"model": model, "max_tokens": 5, "messages": [user], "stream": True}
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    else:
        model = BEDROCK_MODEL
        path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
        body = {"messages": [{"role": "user", "content": [{"text": "x"}]}]}
        headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/fake"}
    fake.script(model, slow)
    async with (
        httpx.AsyncClient(base_url=fake.base_url) as http,
        http.stream("POST", path, json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        first = await anext(response.aiter_raw())
        assert first
        assert fake.cancelled == []
    await _eventually(lambda: fake.cancelled == [model], within=1.0)


async def _eventually(check: Any, within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
