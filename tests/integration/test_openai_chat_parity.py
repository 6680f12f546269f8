"""OpenAI Chat Completions parity, with the real `openai` SDK (and LangChain) against a running
mtai and wire-format fake upstreams: tools (streaming and not), tool results, structured output,
every parameter forwarded, images, refusals, and drop_params.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from mtai.config import Settings
from mtai.runtime import Runtime
from tests.conftest import TenantFixture, add_model
from tests.support.fake_upstreams import Behaviour, FakeToolCall, FakeUpstream

PNG = base64.b64encode(
    base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
).decode()
PNG_URL = f"data:image/png;base64,{PNG}"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


@pytest.fixture
async def sdk(live_server: str, tenant_a: TenantFixture) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=f"{live_server}/v1", api_key=tenant_a.key, max_retries=0)
    yield client
    await client.close()


def sent(fake: FakeUpstream, upstream_model: str) -> Any:
    """The JSON body of the last request the fake received for `upstream_model`."""
    return [r for r in fake.requests if r.model == upstream_model][-1].json


async def test_tool_call_non_streaming(
    sdk: openai.AsyncOpenAI, runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(
            text="",
            tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}', id="call_abc")],
            prompt_tokens=30,
            completion_tokens=12,
            cached_read_tokens=10,
            reasoning_tokens=4,
        ),
    )
    completion = await sdk.chat.completions.create(
        model=spec.name,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.refusal is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert (call.id, call.function.name) == ("call_abc", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (30, 12)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 10
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 4
    body = sent(fake_upstream, spec.upstream_model)
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == "auto"


async def test_tool_calls_streaming_arrive_as_index_keyed_deltas(
    sdk: openai.AsyncOpenAI,
    live_server: str,
    tenant_a: TenantFixture,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    calls = [
        FakeToolCall("get_weather", '{"city": "Paris"}', id="call_1"),
        FakeToolCall("get_weather", '{"city": "Oslo"}', id="call_2"),
    ]
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text="Checking.", tool_calls=calls, cached_read_tokens=3, reasoning_tokens=2),
        Behaviour(text="", tool_calls=calls),
    )
    stream = await sdk.chat.completions.create(
        model=spec.name,
        messages=[{"role": "user", "content": "Weather in Paris and Oslo?"}],
        tools=[WEATHER_TOOL],
        parallel_tool_calls=True,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking."
    assembled: dict[int, dict[str, str]] = {}
    for c in chunks:
        for piece in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            call = assembled.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += piece.id or ""
            if piece.function is not None:
                call["name"] += piece.function.name or ""
                call["arguments"] += piece.function.arguments or ""
    assert [assembled[i]["id"] for i in sorted(assembled)] == ["call_1", "call_2"]
    assert {assembled[i]["name"] for i in assembled} == {"get_weather"}
    assert [json.loads(assembled[i]["arguments"]) for i in sorted(assembled)] == [
        {"city": "Paris"},
        {"city": "Oslo"},
    ]
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens_details is not None
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 3
    assert chunks[-1].usage.completion_tokens_details is not None
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 2
    assert sent(fake_upstream, spec.upstream_model)["parallel_tool_calls"] is True

    # On the wire, as OpenAI does: a call opens with id, type, name and empty arguments, and
    # its arguments follow in pieces keyed by index alone.
    async with httpx.AsyncClient(timeout=30) as http:
        raw = await http.post(
            f"{live_server}/v1/chat/completions",
            json={
                "model": spec.name,
                "messages": [{"role": "user", "content": "again"}],
                "tools": [WEATHER_TOOL],
                "stream": True,
            },
            headers={"Authorization": f"Bearer {tenant_a.key}"},
        )
    events = [json.loads(line[6:]) for line in raw.text.splitlines() if line.startswith("data: {")]
    pieces = [p for e in events for p in e["choices"][0]["delta"].get("tool_calls", [])]
    openings = [p for p in pieces if "id" in p]
    assert openings[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(p) == {"index", "function"} for p in pieces if "id" not in p)
    assert raw.text.rstrip().endswith("data: [DONE]")


async def test_tool_result_round_trip_is_forwarded_exactly(
    sdk: openai.AsyncOpenAI, runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(spec.upstream_model, Behaviour(text="It is sunny in Paris."))
    messages: list[Any] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": '{"sky": "sunny"}'},
    ]
    completion = await sdk.chat.completions.create(
        model=spec.name,
        messages=messages,
        tools=[WEATHER_TOOL],
    )
    assert completion.choices[0].message.content == "It is sunny in Paris."
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"
    forwarded = sent(fake_upstream, spec.upstream_model)["messages"]
    assert [m["role"] for m in forwarded] == ["system", "user", "assistant", "tool"]
    assert forwarded[2]["tool_calls"] == messages[2]["tool_calls"]
    assert not forwarded[2].get("content")
    assert forwarded[3]["tool_call_id"] == "call_abc"
    tool_content = forwarded[3]["content"]
    if isinstance(tool_content, list):
        tool_content = "".join(p["text"] for p in tool_content)
    assert tool_content == '{"sky": "sunny"}'


class Person(BaseModel):
    name: str
    age: int


async def test_parse_with_a_pydantic_model(
    sdk: openai.AsyncOpenAI, runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(spec.upstream_model, Behaviour(text='{"name": "Ada", "age": 36}'))
    completion = await sdk.chat.completions.parse(
        model=spec.name,
        messages=[{"role": "user", "content": "Who wrote the first program?"}],
        response_format=Person,
    )
    assert completion.choices[0].message.parsed == Person(name="Ada", age=36)
    forwarded = sent(fake_upstream, spec.upstream_model)["response_format"]
    assert forwarded["type"] == "json_schema"
    assert forwarded["json_schema"]["name"] == "Person"
    assert forwarded["json_schema"]["strict"] is True
    assert forwarded["json_schema"]["schema"]["properties"] == {
        "name": {"title": "Name", "type": "string"},
        "age": {"title": "Age", "type": "integer"},
    }


async def test_every_parameter_is_forwarded(
    sdk: openai.AsyncOpenAI, runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    completion = await sdk.chat.completions.create(
        model=spec.name,
        messages=[
            {"role": "developer", "content": "Answer in JSON."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
        temperature=0.3,
        top_p=0.9,
        stop=["END", "STOP"],
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"50256": -100},
        logprobs=True,
        top_logprobs=3,
        user="end-user-7",
        max_completion_tokens=50,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        response_format={"type": "json_object"},
    )
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    body = sent(fake_upstream, spec.upstream_model)
    expected = {
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 3,
        "user": "end-user-7",
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
    }
    assert {k: body.get(k) for k in expected} == expected
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 50
    assert body["messages"][0]["role"] in ("system", "developer")
    assert body["messages"][0]["content"] == "Answer in JSON."

    # A stop string, a json_schema format and safety_identifier (OpenAI's new name for user).
    await sdk.chat.completions.create(
        model=spec.name,
        messages=[{"role": "user", "content": "hi"}],
        stop="END",
        safety_identifier="end-user-8",
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "description": "An answer.",
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                "strict": False,
            },
        },
    )
    body = sent(fake_upstream, spec.upstream_model)
    assert body["stop"] in ("END", ["END"])
    assert body["user"] == "end-user-8"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "description": "An answer.",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
            "strict": False,
        },
    }


async def test_logprobs_streaming_and_not(
    sdk: openai.AsyncOpenAI, runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    hi: Any = [{"role": "user", "content": "hi"}]
    completion = await sdk.chat.completions.create(
        model=spec.name, messages=hi, logprobs=True, top_logprobs=2
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    assert "".join(t.token for t in logprobs.content) == "Hello from the fake upstream."
    assert all(len(t.top_logprobs) == 2 for t in logprobs.content)
    stream = await sdk.chat.completions.create(
        model=spec.name, messages=hi, logprobs=True, top_logprobs=1, stream=True
    )
    tokens = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            assert chunk.choices[0].logprobs is not None
            assert chunk.choices[0].logprobs.content is not None
            tokens += [t.token for t in chunk.choices[0].logprobs.content]
    assert "".join(tokens) == "Hello from the fake upstream."
    plain = await sdk.chat.completions.create(model=spec.name, messages=hi, stream=True)
    assert all([c.choices[0].logprobs is None async for c in plain if c.choices])


async def test_image_parts_url_and_data_url(
    sdk: openai.AsyncOpenAI, runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    await sdk.chat.completions.create(
        model=spec.name,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What differs?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://images.example/cat.png", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": PNG_URL}},
                ],
            }
        ],
    )
    parts = sent(fake_upstream, spec.upstream_model)["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "What differs?"}
    assert parts[1] == {
        "type": "image_url",
        "image_url": {"url": "https://images.example/cat.png", "detail": "low"},
    }
    assert parts[2]["type"] == "image_url"
    assert parts[2]["image_url"]["url"] == PNG_URL


async def refused(call: Any, code: str = "") -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        await call
    if code:
        assert caught.value.code == code, caught.value.message
    return caught.value


async def test_what_cannot_be_honoured_is_refused_before_any_upstream_call(
    sdk: openai.AsyncOpenAI,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    hi: Any = [{"role": "user", "content": "hi"}]
    create = sdk.chat.completions.create

    unknown = await refused(
        create(model=spec.name, messages=hi, extra_body={"frobnicate": 1}), "unsupported_parameter"
    )
    assert unknown.status_code == 400
    assert "'frobnicate'" in unknown.message
    tier = await refused(
        create(model=spec.name, messages=hi, service_tier="flex"), "unsupported_parameter"
    )
    assert "'service_tier'" in tier.message
    assert "drop_params" in tier.message
    for field, value in (
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy", "format": "mp3"}),
        ("web_search_options", {}),
        ("functions", [{"name": "f", "parameters": {"type": "object"}}]),
    ):
        # Features that change what the answer is are refused even with drop_params.
        error = await refused(
            create(model=spec.name, messages=hi, extra_body={field: value, "drop_params": True}),
            "unsupported_parameter",
        )
        assert field in error.message
    legacy: Any = [{"role": "function", "name": "f", "content": "42"}]
    function_role = await refused(create(model=spec.name, messages=legacy), "unsupported_parameter")
    assert "'function' role" in function_role.message
    named: Any = [{"role": "user", "content": "hi", "name": "ada"}]
    name = await refused(create(model=spec.name, messages=named), "unsupported_parameter")
    assert "messages[0].name" in name.message
    n = await refused(create(model=spec.name, messages=hi, n=2), "unsupported_parameter")
    assert "n > 1" in n.message

    def image(url: str) -> Any:
        return [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ]

    for url, words in (
        ("data:image/png;base64,!!!not-base64!!!", "not valid base64"),
        # Not ASCII: binascii raises a plain ValueError there, which used to be a 500.
        ("data:image/png;base64," + PNG[:8] + "\u00e9" + PNG[8:], "not valid base64"),
        ("data:image/svg+xml;base64,PHN2Zy8+", "not supported"),
        ("data:image/jpeg;base64," + PNG, "not a image/jpeg image"),
        ("data:image/png," + PNG, "data:<image type>;base64"),
        ("http://images.example/cat.png", "must be https"),
        ("file:///etc/passwd", "must be https"),
    ):
        error = await refused(create(model=spec.name, messages=image(url)))
        assert error.status_code == 400, url
        assert words in error.message, (url, error.message)
    monkeypatch.setattr(settings, "max_image_bytes", 1024)
    big = base64.b64encode(base64.b64decode(PNG) + b"\0" * 2000).decode()
    oversize = await refused(
        create(model=spec.name, messages=image(f"data:image/png;base64,{big}"))
    )
    assert oversize.status_code == 413
    assert "larger than 1024 bytes" in oversize.message
    monkeypatch.setattr(settings, "max_images_per_request", 2)
    three: Any = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG_URL}}] * 3}
    ]
    assert "Too many images" in (await refused(create(model=spec.name, messages=three))).message

    absent = await refused(
        create(
            model=spec.name,
            messages=hi,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "launch_rocket"}},
        )
    )
    assert absent.status_code == 400
    assert "launch_rocket" in absent.message
    orphan = await refused(
        create(
            model=spec.name,
            messages=[*hi, {"role": "tool", "tool_call_id": "call_nobody", "content": "42"}],
        )
    )
    assert orphan.status_code == 400
    assert "call_nobody" in orphan.message
    ends_with_assistant = await refused(
        create(model=spec.name, messages=[*hi, {"role": "assistant", "content": "hello"}])
    )
    assert ends_with_assistant.status_code == 400
    assert "last message" in ends_with_assistant.message
    bad_name: Any = dict(
        WEATHER_TOOL, function={**WEATHER_TOOL["function"], "name": "get weather!"}
    )
    assert (
        await refused(create(model=spec.name, messages=hi, tools=[bad_name]))
    ).status_code == 400
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(100):
        deep = {"type": "object", "properties": {"x": deep}}
    too_deep = await refused(
        create(
            model=spec.name,
            messages=hi,
            response_format={"type": "json_schema", "json_schema": {"name": "d", "schema": deep}},
        )
    )
    assert "nested deeper" in too_deep.message
    listed: Any = [{"type": "function", "function": {"name": "f", "parameters": [1]}}]
    not_object = await refused(create(model=spec.name, messages=hi, tools=listed))
    assert not_object.status_code == 400
    lonely = await refused(create(model=spec.name, messages=hi, top_logprobs=2))
    assert "requires logprobs" in lonely.message
    five_stops = await refused(create(model=spec.name, messages=hi, stop=["a", "b", "c", "d", "e"]))
    assert five_stops.status_code == 400
    bias = {str(i): 1 for i in range(301)}
    assert (await refused(create(model=spec.name, messages=hi, logit_bias=bias))).status_code == 400
    assert (await refused(create(model=spec.name, messages=hi, user="u" * 257))).status_code == 400
    assert fake_upstream.count(spec.upstream_model) == 0


async def test_hostile_shapes_are_400s_not_500s(
    live_server: str, tenant_a: TenantFixture, runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    hi = [{"role": "user", "content": "hi"}]
    deep_schema = '{"type": "object", "properties": {"x": ' * 900 + "{}" + "}}" * 900
    tool = '{"type": "function", "function": {"name": "f", "parameters": ' + deep_schema + "}}"
    bodies = [
        # Deeper than the JSON parser goes, then deep but parseable, then wide.
        '{"model": "m", "messages": ' + "[" * 200_000 + "]" * 200_000 + "}",
        json.dumps({"model": spec.name, "messages": hi})[:-1] + ', "tools": [' + tool + "]}",
        json.dumps({"model": spec.name, "messages": hi, "tools": [WEATHER_TOOL] * 129}),
        json.dumps({"model": spec.name, "messages": hi, "stop": ["x"] * 10_000}),
        json.dumps(
            {
                "model": spec.name,
                "messages": hi,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "wide",
                        "schema": {"type": "object", "enum": list(range(20_000))},
                    },
                },
            }
        ),
        json.dumps({"model": spec.name, "messages": [{"role": "user", "content": 5}]}),
        json.dumps({"model": spec.name, "messages": [{"role": "robot", "content": "hi"}]}),
        json.dumps({"model": spec.name, "messages": [{"role": "assistant"}, *hi]}),
    ]
    async with httpx.AsyncClient(timeout=30) as http:
        for body in bodies:
            answer = await http.post(
                f"{live_server}/v1/chat/completions",
                content=body,
                headers={
                    "Authorization": f"Bearer {tenant_a.key}",
                    "Content-Type": "application/json",
                },
            )
            assert answer.status_code == 400, (body[:80], answer.text[:300])
            assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert fake_upstream.count(spec.upstream_model) == 0


async def test_drop_params_drops_and_says_so(
    sdk: openai.AsyncOpenAI, runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    raw = await sdk.chat.completions.with_raw_response.create(
        model=spec.name,
        messages=[{"role": "user", "content": "hi"}],
        service_tier="flex",
        extra_body={"drop_params": True, "frobnicate": 1},
    )
    assert raw.http_response.status_code == 200
    assert raw.headers["x-mtai-dropped-params"] == "service_tier, frobnicate"
    body = sent(fake_upstream, spec.upstream_model)
    assert "service_tier" not in body
    assert "frobnicate" not in body
    assert "drop_params" not in body
    streamed = await sdk.chat.completions.with_raw_response.create(
        model=spec.name,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_body={"drop_params": True, "store": True},
    )
    assert streamed.headers["x-mtai-dropped-params"] == "store"
    events: Any = streamed.parse()
    chunks = [c async for c in events]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    named: Any = [{"role": "user", "content": "hi", "name": "ada"}]
    renamed = await sdk.chat.completions.with_raw_response.create(
        model=spec.name, messages=named, extra_body={"drop_params": True}
    )
    assert renamed.headers["x-mtai-dropped-params"] == "messages.name"
    assert "name" not in sent(fake_upstream, spec.upstream_model)["messages"][0]
    plain = await sdk.chat.completions.with_raw_response.create(
        model=spec.name, messages=[{"role": "user", "content": "hi"}]
    )
    assert "x-mtai-dropped-params" not in plain.headers


async def test_gateway_drops_what_the_model_cannot_honour_only_when_asked(
    sdk: openai.AsyncOpenAI,
) -> None:
    hi: Any = [{"role": "user", "content": "hi"}]
    # The extractive answerer has no notion of an end user: refused, then dropped on request.
    error = await refused(
        sdk.chat.completions.create(model="extractive", messages=hi, user="u-1"),
        "unsupported_parameter",
    )
    assert "user" in error.message
    raw = await sdk.chat.completions.with_raw_response.create(
        model="extractive",
        messages=hi,
        user="u-1",
        extra_body={"drop_params": True, "metadata": {"team": "a"}},
    )
    assert raw.headers["x-mtai-dropped-params"] == "user, metadata"


@pytest.mark.parametrize("provider", ["anthropic", "bedrock"])
async def test_tool_round_trip_through_other_providers(
    provider: str, sdk: openai.AsyncOpenAI, runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    spec = await add_model(runtime, fake_upstream, provider)
    call = FakeToolCall("get_weather", '{"city": "Paris"}', id="toolu_01")
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text="", tool_calls=[call]),
        Behaviour(text="Let me check.", tool_calls=[call]),
        Behaviour(text="Sunny."),
    )
    question: Any = [{"role": "user", "content": "Weather in Paris?"}]
    tools: Any = [WEATHER_TOOL]
    completion = await sdk.chat.completions.create(model=spec.name, messages=question, tools=tools)
    asked: Any
    [asked] = completion.choices[0].message.tool_calls or []
    assert completion.choices[0].finish_reason == "tool_calls"
    assert (asked.id, asked.function.name) == ("toolu_01", "get_weather")
    assert json.loads(asked.function.arguments) == {"city": "Paris"}
    stream = await sdk.chat.completions.create(
        model=spec.name, messages=question, tools=tools, stream=True
    )
    chunks = [c async for c in stream]
    pieces = [p for c in chunks if c.choices for p in c.choices[0].delta.tool_calls or []]
    assert pieces[0].id == "toolu_01"
    assert pieces[0].function is not None
    assert pieces[0].function.name == "get_weather"
    arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
    assert json.loads(arguments) == {"city": "Paris"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Let me check."
    history: Any = [
        *question,
        completion.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny, 24 C"},
    ]
    answer = await sdk.chat.completions.create(model=spec.name, messages=history, tools=tools)
    assert answer.choices[0].message.content == "Sunny."
    forwarded = json.dumps(sent(fake_upstream, spec.upstream_model))
    assert "toolu_01" in forwarded
    assert "sunny, 24 C" in forwarded
    assert "get_weather" in forwarded


async def test_langchain_agent_loop(
    live_server: str, tenant_a: TenantFixture, runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text="", tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}')]),
        Behaviour(text="It is sunny in Paris."),
    )
    model = ChatOpenAI(
        base_url=f"{live_server}/v1", api_key=tenant_a.key, model=spec.name, max_retries=0
    ).bind_tools([get_weather])
    history: list[Any] = [HumanMessage("What is the weather in Paris?")]
    reply = await model.ainvoke(history)
    history.append(reply)
    assert [c["name"] for c in reply.tool_calls] == ["get_weather"]
    for call in reply.tool_calls:
        result = await asyncio.to_thread(get_weather.invoke, call["args"])
        history.append(ToolMessage(result, tool_call_id=call["id"]))
    final = await model.ainvoke(history)
    assert final.content == "It is sunny in Paris."
    forwarded = sent(fake_upstream, spec.upstream_model)["messages"]
    assert forwarded[-1]["role"] == "tool"
    assert forwarded[-1]["content"] == "sunny in Paris"
    assert forwarded[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
