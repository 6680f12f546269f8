"""The official `anthropic` SDK against mtai's /v1/messages over real HTTP, through each kind of
upstream (OpenAI-compatible, Anthropic, Bedrock fakes speaking their real wire formats)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import anthropic
import httpx
import pytest

from mtai.runtime import Runtime
from tests.conftest import AdminFixture, TenantFixture, add_model
from tests.integration.test_gateway import usage_row
from tests.support.fake_upstreams import Behaviour, FakeToolCall, FakeUpstream, RecordedRequest

PROVIDERS = ("openai", "anthropic", "bedrock")
# A 1x1 PNG.
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E"
    "rkJggg=="
)
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def sdk(live_server: str, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=live_server, api_key=key, max_retries=0)


def recorded(fake: FakeUpstream, upstream_model: str) -> RecordedRequest:
    """The last request the fake received for a model."""
    return [r for r in fake.requests if r.model == upstream_model][-1]


def upstream_text(request: RecordedRequest) -> str:
    """Every text the upstream was sent (system prompt included), in its own wire format."""
    body = request.json
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "content") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    if isinstance(body.get("system"), str):
        found.append(body["system"])
    walk({k: v for k, v in body.items() if k in ("system", "messages")})
    return "\n".join(found)


def tool_names(request: RecordedRequest) -> list[str]:
    body = request.json
    if request.protocol == "openai":
        return [t["function"]["name"] for t in body["tools"]]
    if request.protocol == "anthropic":
        return [t["name"] for t in body["tools"]]
    return [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]]


def tool_exchange(request: RecordedRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the assistant's call, the tool's result) as the upstream got them: {id, name, input}
    and {id, text, is_error}."""
    body = request.json
    if request.protocol == "openai":
        call = next(m for m in body["messages"] if m.get("tool_calls"))["tool_calls"][0]
        result = next(m for m in body["messages"] if m["role"] == "tool")
        content = result["content"]
        text = content if isinstance(content, str) else "".join(p["text"] for p in content)
        return (
            {
                "id": call["id"],
                "name": call["function"]["name"],
                "input": json.loads(call["function"]["arguments"]),
            },
            {"id": result["tool_call_id"], "text": text, "is_error": None},
        )
    blocks = [b for m in body["messages"] for b in m["content"] if isinstance(b, dict)]
    if request.protocol == "anthropic":
        use = next(b for b in blocks if b.get("type") == "tool_use")
        res = next(b for b in blocks if b.get("type") == "tool_result")
        content = res["content"]
        text = content if isinstance(content, str) else "".join(p["text"] for p in content)
        return (
            {"id": use["id"], "name": use["name"], "input": use["input"]},
            {"id": res["tool_use_id"], "text": text, "is_error": res.get("is_error", False)},
        )
    use = next(b["toolUse"] for b in blocks if "toolUse" in b)
    res = next(b["toolResult"] for b in blocks if "toolResult" in b)
    return (
        {"id": use["toolUseId"], "name": use["name"], "input": use["input"]},
        {
            "id": res["toolUseId"],
            "text": "".join(c.get("text", "") for c in res["content"]),
            "is_error": res.get("status") == "error",
        },
    )


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_text_and_system(
    provider: str,
    live_server: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, provider)
    fake_upstream.script(
        spec.upstream_model, Behaviour(text="Bonjour.", prompt_tokens=11, completion_tokens=3)
    )
    api = sdk(live_server, tenant_a.key)
    raw = await api.messages.with_raw_response.create(
        model=spec.name,
        max_tokens=100,
        system=[{"type": "text", "text": "Answer in French."}],
        messages=[{"role": "user", "content": "Say hello."}],
    )
    message = await raw.parse()
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "Bonjour.")]
    assert (message.role, message.model, message.stop_reason) == (
        "assistant",
        spec.name,
        "end_turn",
    )
    assert message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)
    assert message.id.startswith("msg_")
    assert message._request_id == raw.headers["x-request-id"]
    sent = upstream_text(recorded(fake_upstream, spec.upstream_model))
    assert "Answer in French." in sent
    assert "Say hello." in sent
    row = await usage_row(runtime, raw.headers["x-request-id"])
    assert (row.api, row.prompt_tokens, row.completion_tokens) == ("anthropic", 11, 3)
    await api.close()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_use_non_streaming_and_streaming(
    provider: str,
    live_server: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, provider)
    call = FakeToolCall("get_weather", '{"city": "Paris", "unit": "C"}')
    for _ in range(3):
        fake_upstream.script(spec.upstream_model, Behaviour(text="Let me look.", tool_calls=[call]))
    api = sdk(live_server, tenant_a.key)
    asked: dict[str, Any] = {
        "model": spec.name,
        "max_tokens": 200,
        "tools": [WEATHER],
        "tool_choice": {"type": "auto"},
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    message = await api.messages.create(**asked)
    assert [b.type for b in message.content] == ["text", "tool_use"]
    use = message.content[1]
    assert use.type == "tool_use"
    assert (use.id, use.name, use.input) == (call.id, "get_weather", {"city": "Paris", "unit": "C"})
    assert message.stop_reason == "tool_use"
    assert tool_names(recorded(fake_upstream, spec.upstream_model)) == ["get_weather"]

    async with api.messages.stream(**asked) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "Let me look."
    assert [b.type for b in final.content] == ["text", "tool_use"]
    streamed = final.content[1]
    assert streamed.type == "tool_use"
    assert (streamed.id, streamed.input) == (call.id, {"city": "Paris", "unit": "C"})
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 7

    events = [e async for e in await api.messages.create(**asked, stream=True)]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["text", "tool_use"]
    assert kinds.count("content_block_stop") == 2
    pieces = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == {"city": "Paris", "unit": "C"}
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "tool_use"
    await api.close()


async def test_upstream_arguments_nested_past_the_parser_are_shown_raw(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    """An OpenAI-compatible upstream (a tenant's own server) that writes tool arguments nested
    deeper than Python's JSON parser goes: the answer still arrives, its arguments as the raw
    text, rather than a RecursionError escaping as a 500 that the SDK would retry and pay for
    again."""
    spec = await add_model(runtime, fake_upstream, "openai")
    arguments = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    fake_upstream.script(
        spec.upstream_model, Behaviour(tool_calls=[FakeToolCall("get_weather", arguments)])
    )
    api = sdk(live_server, tenant_a.key)
    asked: dict[str, Any] = {
        "model": spec.name,
        "max_tokens": 200,
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "Weather?"}],
    }
    message = await api.messages.create(**asked)
    await api.close()
    use = message.content[-1]
    assert use.type == "tool_use"
    assert use.input == {"_raw_arguments": arguments}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_result_round_trip(
    provider: str,
    live_server: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, provider)
    call = FakeToolCall("get_weather", '{"city": "Oslo"}')
    fake_upstream.script(spec.upstream_model, Behaviour(text="", tool_calls=[call]))
    fake_upstream.script(spec.upstream_model, Behaviour(text="It is 4 degrees in Oslo."))
    api = sdk(live_server, tenant_a.key)
    history: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = await api.messages.create(
        model=spec.name, max_tokens=100, tools=[WEATHER], messages=history
    )
    assert [b.type for b in first.content] == ["tool_use"]
    use = first.content[0]
    assert use.type == "tool_use"
    history += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": use.id,
                    "content": [{"type": "text", "text": "4 degrees, cloudy"}],
                }
            ],
        },
    ]
    second = await api.messages.create(
        model=spec.name, max_tokens=100, tools=[WEATHER], messages=history
    )
    assert second.content[0].type == "text"
    assert second.content[0].text == "It is 4 degrees in Oslo."
    assert second.stop_reason == "end_turn"
    sent_call, sent_result = tool_exchange(recorded(fake_upstream, spec.upstream_model))
    assert sent_call == {"id": call.id, "name": "get_weather", "input": {"city": "Oslo"}}
    assert sent_result["id"] == call.id
    assert sent_result["text"] == "4 degrees, cloudy"
    assert not sent_result["is_error"]
    await api.close()


async def test_a_tool_error_and_text_after_the_result_reach_the_upstream(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "anthropic")
    api = sdk(live_server, tenant_a.key)
    await api.messages.create(
        model=spec.name,
        max_tokens=50,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "city is required",
                        "is_error": True,
                    },
                    {"type": "text", "text": "Use Rome."},
                ],
            },
        ],
    )
    messages = recorded(fake_upstream, spec.upstream_model).json["messages"]
    blocks = [b for m in messages for b in m["content"] if isinstance(m["content"], list)]
    result = next(b for b in blocks if b["type"] == "tool_result")
    assert result["tool_use_id"] == "toolu_1"
    assert result["is_error"] is True
    assert "Use Rome." in upstream_text(recorded(fake_upstream, spec.upstream_model))
    await api.close()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_image_blocks(
    provider: str,
    live_server: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, provider)
    api = sdk(live_server, tenant_a.key)
    base64_image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    url_image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    await api.messages.create(
        model=spec.name,
        max_tokens=50,
        messages=[{"role": "user", "content": [base64_image, {"type": "text", "text": "What?"}]}],
    )
    assert PNG in json.dumps(recorded(fake_upstream, spec.upstream_model).json)
    if provider == "bedrock":
        # Bedrock takes image bytes only; mtai does not fetch a client's URL for it.
        with pytest.raises(anthropic.BadRequestError) as refused:
            await api.messages.create(
                model=spec.name,
                max_tokens=50,
                messages=[{"role": "user", "content": [url_image]}],
            )
        assert "image_url" in refused.value.message
    else:
        await api.messages.create(
            model=spec.name, max_tokens=50, messages=[{"role": "user", "content": [url_image]}]
        )
        assert "https://example.com/a.png" in json.dumps(
            recorded(fake_upstream, spec.upstream_model).json
        )
    await api.close()


async def test_sampling_and_stop_settings_reach_the_upstream(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    api = sdk(live_server, tenant_a.key)
    asked: dict[str, Any] = {
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Count."}],
        "stop_sequences": ["END", "\n\n"],
        "metadata": {"user_id": "end-user-7"},
    }
    # The installed SDK no longer lists the sampling settings; older ones and other clients
    # send them, and the API takes them.
    sampling = {"temperature": 0.3, "top_p": 0.9}
    native = await add_model(runtime, fake_upstream, "anthropic")
    await api.messages.create(model=native.name, extra_body={**sampling, "top_k": 40}, **asked)
    body = recorded(fake_upstream, native.upstream_model).json
    assert (body["stop_sequences"], body["top_p"], body["top_k"]) == (["END", "\n\n"], 0.9, 40)
    assert (body["temperature"], body["metadata"]) == (0.3, {"user_id": "end-user-7"})
    assert body["max_tokens"] == 64

    bedrock = await add_model(runtime, fake_upstream, "bedrock")
    await api.messages.create(model=bedrock.name, extra_body=sampling, **asked)
    inference = recorded(fake_upstream, bedrock.upstream_model).json["inferenceConfig"]
    assert (inference["stopSequences"], inference["topP"]) == (["END", "\n\n"], 0.9)

    openai_model = await add_model(runtime, fake_upstream, "openai")
    with pytest.raises(anthropic.BadRequestError) as refused:
        await api.messages.create(
            model=openai_model.name, extra_body={**sampling, "top_k": 40}, **asked
        )
    assert "top_k" in refused.value.message
    body = refused.value.body
    assert isinstance(body, dict)
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["request_id"] == refused.value.response.headers["request-id"]
    dropped = await api.messages.with_raw_response.create(
        model=openai_model.name,
        extra_body={**sampling, "top_k": 40, "drop_params": True},
        **asked,
    )
    assert dropped.headers["x-mtai-dropped-params"] == "top_k"
    body = recorded(fake_upstream, openai_model.upstream_model).json
    assert (body["stop"], body["top_p"], body["user"]) == (["END", "\n\n"], 0.9, "end-user-7")
    assert "top_k" not in body
    await api.close()


async def test_usage_counts_cached_input_apart_as_anthropic_does(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "anthropic")
    for _ in range(2):
        fake_upstream.script(
            spec.upstream_model,
            Behaviour(prompt_tokens=100, cached_read_tokens=60, cached_write_tokens=10),
        )
    api = sdk(live_server, tenant_a.key)
    asked: dict[str, Any] = {
        "model": spec.name,
        "max_tokens": 50,
        "system": [{"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}],
    }
    raw = await api.messages.with_raw_response.create(**asked)
    message = await raw.parse()
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (30, 60)
    assert (usage.cache_creation_input_tokens, usage.output_tokens) == (10, 7)
    # Prompt-caching hints are accepted, not forwarded, and said so.
    assert raw.headers["x-mtai-dropped-params"] == "cache_control"
    assert "cache_control" not in json.dumps(recorded(fake_upstream, spec.upstream_model).json)
    async with api.messages.stream(**asked) as stream:
        final = await stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (30, 60)
    assert final.usage.cache_creation_input_tokens == 10
    await api.close()


async def test_raw_event_stream_is_anthropics_sequence(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(
            text="Checking both.",
            tool_calls=[
                FakeToolCall("get_weather", '{"city": "Rome"}'),
                FakeToolCall("get_weather", '{"city": "Lima"}'),
            ],
        ),
    )
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "POST",
            f"{live_server}/v1/messages",
            json={
                "model": spec.name,
                "max_tokens": 100,
                "stream": True,
                "tools": [WEATHER],
                "messages": [{"role": "user", "content": "Rome and Lima?"}],
            },
            headers={"x-api-key": tenant_a.key, "anthropic-version": "2023-06-01"},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    events = [
        (name.removeprefix("event: "), json.loads(data.removeprefix("data: ")))
        for name, data in zip(lines[::2], lines[1::2], strict=True)
    ]
    assert all(name == payload["type"] for name, payload in events)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert (start["content"], start["stop_reason"], start["role"]) == ([], None, "assistant")
    assert start["usage"]["input_tokens"] > 0
    blocks = [p["content_block"] for n, p in events if n == "content_block_start"]
    assert [b["type"] for b in blocks] == ["text", "tool_use", "tool_use"]
    assert [p["index"] for n, p in events if n == "content_block_start"] == [0, 1, 2]
    assert [p["index"] for n, p in events if n == "content_block_stop"] == [0, 1, 2]
    arguments = {
        index: "".join(
            p["delta"]["partial_json"]
            for n, p in events
            if n == "content_block_delta" and p["index"] == index
        )
        for index in (1, 2)
    }
    assert [json.loads(arguments[i])["city"] for i in (1, 2)] == ["Rome", "Lima"]
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == 7
    assert final["usage"]["input_tokens"] == 20


async def test_a_failure_mid_stream_is_an_error_event(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "anthropic", timeout_seconds=0.5, max_retries=0)
    fake_upstream.script(spec.upstream_model, Behaviour(kind="slow", text="a b c d e f", delay=2))
    api = sdk(live_server, tenant_a.key)
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as failed:
        async with api.messages.stream(
            model=spec.name, max_tokens=50, messages=[{"role": "user", "content": "go"}]
        ) as stream:
            async for text in stream.text_stream:
                texts.append(text)
    assert texts  # the answer had started
    body = failed.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert "mid-answer" in body["error"]["message"]
    await api.close()


async def test_errors_arrive_as_the_sdks_exceptions(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "anthropic")
    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.AuthenticationError) as denied:
        await sdk(live_server, "mtai_wrong").messages.create(
            model=spec.name, max_tokens=10, messages=hi
        )
    assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    api = sdk(live_server, tenant_a.key)
    with pytest.raises(anthropic.NotFoundError) as missing:
        await api.messages.create(model="no-such-model", max_tokens=10, messages=hi)
    assert "does not exist" in missing.value.message
    assert missing.value.request_id == missing.value.response.headers["x-request-id"]
    bad_requests: list[dict[str, Any]] = [
        {"max_tokens": 0},
        {"extra_body": {"temperature": 1.5}},
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        {"thinking": {"type": "enabled", "budget_tokens": 2000}},
        {"extra_body": {"mcp_servers": [{"type": "url", "url": "https://mcp.example"}]}},
        {"extra_body": {"frobnicate": 1}},
        {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "%%"},
                        }
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": "iVB\u00e9",  # not ASCII: a plain ValueError, once a 500
                            },
                        }
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "url", "url": "http://10.0.0.1/x"}}
                    ],
                }
            ]
        },
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "A"}]},
        {"messages": [{"role": "user", "content": []}]},
        {"tool_choice": {"type": "tool", "name": "missing"}, "tools": [WEATHER]},
        {"tools": [WEATHER, WEATHER]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "?"}],
                }
            ]
        },
    ]
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"a": deep}
    bad_requests += [
        # A tool input nested past any real use, and an "image" that is not one.
        {
            "messages": [
                *hi,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": deep}
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
            ],
            "tools": [WEATHER],
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": base64.b64encode(b"GIF89a not a png").decode(),
                            },
                        }
                    ],
                }
            ]
        },
    ]
    for change in bad_requests:
        asked: dict[str, Any] = {"model": spec.name, "max_tokens": 10, "messages": hi, **change}
        with pytest.raises(anthropic.BadRequestError) as bad:
            await api.messages.create(**asked)
        assert bad.value.body["error"]["type"] == "invalid_request_error", change  # type: ignore[index]
    assert fake_upstream.count(spec.upstream_model) == 0
    thinking = await api.messages.with_raw_response.create(
        model=spec.name,
        max_tokens=10,
        messages=hi,
        thinking={"type": "enabled", "budget_tokens": 2000},
        extra_body={"drop_params": True},
    )
    assert thinking.headers["x-mtai-dropped-params"] == "thinking"
    assert "thinking" not in recorded(fake_upstream, spec.upstream_model).json
    # Settings that ask for what every answer gets are honoured, not dropped.
    plain = await api.messages.with_raw_response.create(
        model=spec.name,
        max_tokens=10,
        messages=hi,
        thinking={"type": "disabled"},
        service_tier="standard_only",
        speed="standard",
    )
    assert "x-mtai-dropped-params" not in plain.headers
    with pytest.raises(anthropic.BadRequestError):
        await api.messages.create(model=spec.name, max_tokens=10, messages=hi, speed="fast")
    async with httpx.AsyncClient() as http:
        malformed = await http.post(
            f"{live_server}/v1/messages",
            json={"model": spec.name, "max_tokens": 10, "messages": hi},
            headers={"x-api-key": tenant_a.key, "anthropic-version": "latest"},
        )
        unauthenticated = await http.post(f"{live_server}/v1/messages/count_tokens", json={})
    assert malformed.status_code == 400
    assert malformed.json()["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in malformed.json()["error"]["message"]
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["type"] == "authentication_error"
    assert unauthenticated.headers["request-id"] == unauthenticated.headers["x-request-id"]
    await api.close()


async def test_structured_output_through_output_config(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(spec.upstream_model, Behaviour(text='{"answer": 4}'))
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    api = sdk(live_server, tenant_a.key)
    message = await api.messages.create(
        model=spec.name,
        max_tokens=50,
        messages=[{"role": "user", "content": "2+2?"}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert message.content[0].type == "text"
    assert json.loads(message.content[0].text) == {"answer": 4}
    sent = recorded(fake_upstream, spec.upstream_model).json["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"] == schema
    await api.close()


async def test_count_tokens(
    live_server: str,
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    platform_admin: AdminFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "anthropic")
    api = sdk(live_server, tenant_a.key)
    plain = await api.messages.count_tokens(
        model=spec.name, messages=[{"role": "user", "content": "How many tokens is this?"}]
    )
    more = await api.messages.count_tokens(
        model=spec.name,
        system="You are terse.",
        tools=[WEATHER],
        messages=[{"role": "user", "content": "How many tokens is this?"}],
    )
    assert 0 < plain.input_tokens < more.input_tokens
    assert fake_upstream.count(spec.upstream_model) == 0  # counted by mtai, not the upstream
    with pytest.raises(anthropic.NotFoundError):
        await api.messages.count_tokens(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    # A model the tenant may not use is refused, as a chat would be.
    patched = await client.patch(
        f"/api/v1/tenants/{tenant_b.id}",
        json={"settings": {"allowed_models": ["extractive"]}},
        headers=platform_admin.headers,
    )
    assert patched.status_code == 200, patched.text
    other = sdk(live_server, tenant_b.key)
    with pytest.raises(anthropic.PermissionDeniedError):
        await other.messages.count_tokens(
            model=spec.name, messages=[{"role": "user", "content": "hi"}]
        )
    await api.close()
    await other.close()


async def test_anthropic_base_url_and_x_api_key(
    live_server: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What tools honouring ANTHROPIC_BASE_URL do: the SDK with no base_url, configured by the
    environment; and the `x-api-key` header that Claude Code and older SDKs send."""
    spec = await add_model(runtime, fake_upstream, "bedrock")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", live_server)
    monkeypatch.setenv("ANTHROPIC_API_KEY", tenant_a.key)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)

    def run() -> str:
        with anthropic.Anthropic(max_retries=0) as sync:
            message = sync.messages.create(
                model=spec.name, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
            )
        block = message.content[0]
        assert block.type == "text"
        return block.text

    assert await asyncio.to_thread(run) == "Hello from the fake upstream."
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{live_server}/v1/messages",
            json={
                "model": spec.name,
                "max_tokens": 20,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": tenant_a.key, "anthropic-version": "2023-06-01"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"] == [{"type": "text", "text": "Hello from the fake upstream."}]
    assert answer.headers["request-id"] == answer.headers["x-request-id"]


async def test_client_leaving_mid_stream_stops_the_upstream_and_is_charged(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "bedrock")
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(kind="slow", text="word " * 6, delay=0.2, completion_tokens=200),
    )
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "POST",
            f"{live_server}/v1/messages",
            json={
                "model": spec.name,
                "max_tokens": 300,
                "stream": True,
                "messages": [{"role": "user", "content": "talk"}],
            },
            headers={"x-api-key": tenant_a.key},
        ) as response,
    ):
        request_id = response.headers["request-id"]
        received = 0
        async for line in response.aiter_lines():
            received += '"text_delta"' in line
            if received >= 3:
                break
    deadline = asyncio.get_running_loop().time() + 5
    while spec.upstream_model not in fake_upstream.cancelled:
        assert asyncio.get_running_loop().time() < deadline, "the upstream stream was not stopped"
        await asyncio.sleep(0.05)
    row = await usage_row(runtime, request_id)
    assert row.status == "cancelled"
    assert row.api == "anthropic"
    assert 3 <= row.completion_tokens < 200
