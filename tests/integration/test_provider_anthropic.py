"""The Anthropic adapter against the wire-format fake: every canonical field as Anthropic
receives it (what the fake recorded), and every answer shape as the canonical side gets it."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest

from mtai.providers.llm.anthropic import JSON_TOOL, AnthropicProvider
from mtai.providers.llm.base import CompletionRequest, UpstreamError
from mtai.providers.llm.conversation import (
    Completion,
    Delta,
    Generation,
    ImagePart,
    Message,
    ResponseFormat,
    StreamEnd,
    StreamEvent,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Usage,
)
from tests.support.fake_upstreams import Behaviour, FakeToolCall, FakeUpstream, Kind

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake image bytes").decode()
WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
CLOCK = ToolSpec(name="get_time")  # no description, the default schema
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
    "required": ["city", "celsius"],
}


@pytest.fixture
def fake(fake_upstream: FakeUpstream) -> FakeUpstream:
    fake_upstream.reset()
    return fake_upstream


@pytest.fixture
async def provider(fake: FakeUpstream) -> AsyncIterator[AnthropicProvider]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield AnthropicProvider(fake.base_url, "key", client)


def request(messages: list[Message], model: str = "claude-t", **settings: Any) -> CompletionRequest:
    return CompletionRequest(model, messages, 100, Generation(**settings))


def sent(fake: FakeUpstream) -> dict[str, Any]:
    """The body of the one request the fake received."""
    [recorded] = fake.requests
    assert recorded.protocol == "anthropic"
    assert recorded.headers["x-api-key"] == "key"
    assert recorded.headers["anthropic-version"] == "2023-06-01"
    body: dict[str, Any] = recorded.json
    return body


async def collect(provider: AnthropicProvider, req: CompletionRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(req)]


def reassemble(events: list[StreamEvent]) -> tuple[str, list[ToolCall], StreamEnd]:
    """The text, tool calls and end of a stream, put together as a client would."""
    text = "".join(e.text for e in events if isinstance(e, Delta))
    calls: dict[int, list[str]] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            if event.id is not None:
                assert event.index not in calls, "a call's id and name come once, first"
                assert event.name is not None
                calls[event.index] = [event.id, event.name, ""]
            calls[event.index][2] += event.arguments
    assert list(calls) == list(range(len(calls)))
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert not any(isinstance(e, StreamEnd) for e in events[:-1])
    return text, [ToolCall(*calls[i]) for i in sorted(calls)], end


# --------------------------------------------------------------------------- requests


async def test_a_whole_conversation_is_sent_as_anthropic_blocks(
    fake: FakeUpstream, provider: AnthropicProvider
) -> None:
    conversation = [
        Message("system", "Be brief."),
        Message(
            "user",
            [
                TextPart("What is in these pictures, and the weather?"),
                ImagePart("https://images.example/cat.png", detail="high"),
                ImagePart(f"data:image/png;base64,{PNG}"),
            ],
        ),
        Message(
            "assistant",
            [
                TextPart("Let me look."),
                ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
                ToolCall("toolu_2", "get_time", ""),
            ],
        ),
        Message(
            "tool",
            [
                ToolResult(
                    "toolu_1",
                    (TextPart("18 C"), ImagePart(f"data:image/png;base64,{PNG}")),
                ),
            ],
        ),
        Message("tool", [ToolResult("toolu_2", (TextPart("clock broken"),), is_error=True)]),
        Message("user", "Thanks. And in Rome?"),
        Message("system", "Answer in English."),
    ]
    await provider.complete(
        request(
            conversation,
            temperature=1.7,
            top_p=0.9,
            top_k=40,
            stop=("END", "\n\nHuman:"),
            user="user-42",
            tools=(WEATHER, CLOCK),
            tool_choice=ToolChoice("required"),
            parallel_tool_calls=False,
        )
    )
    body = sent(fake)
    png = {"type": "base64", "media_type": "image/png", "data": PNG}
    assert body == {
        "model": "claude-t",
        "max_tokens": 100,
        "stream": False,
        # Every system message, wherever it stood, goes to the top-level string.
        "system": "Be brief.\n\nAnswer in English.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these pictures, and the weather?"},
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://images.example/cat.png"},
                    },
                    {"type": "image", "source": png},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
                ],
            },
            # Two tool messages and the user's next words: one user turn, results first.
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            {"type": "text", "text": "18 C"},
                            {"type": "image", "source": png},
                        ],
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "clock broken"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "Thanks. And in Rome?"},
                ],
            },
        ],
        "temperature": 1.0,  # Anthropic's range ends at 1
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END", "\n\nHuman:"],
        "metadata": {"user_id": "user-42"},
        "tools": [
            {
                "name": "get_weather",
                "description": "The weather in a city",
                "input_schema": WEATHER.parameters,
            },
            {"name": "get_time", "input_schema": {"type": "object"}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("none"), None, {"type": "none"}),
        (ToolChoice("none"), False, {"type": "none"}),  # "none" takes no parallel setting
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("tool", "get_weather"), None, {"type": "tool", "name": "get_weather"}),
        (
            ToolChoice("tool", "get_weather"),
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, True, None),  # parallel calls are Anthropic's default
        (None, None, None),
    ],
)
async def test_tool_choice_variants(
    fake: FakeUpstream,
    provider: AnthropicProvider,
    choice: ToolChoice | None,
    parallel: bool | None,
    expected: dict[str, Any] | None,
) -> None:
    await provider.complete(
        request(
            [Message("user", "weather?")],
            tools=(WEATHER,),
            tool_choice=choice,
            parallel_tool_calls=parallel,
        )
    )
    assert sent(fake).get("tool_choice") == expected


async def test_settings_that_are_not_asked_for_are_not_sent(
    fake: FakeUpstream, provider: AnthropicProvider
) -> None:
    # Neither a tool choice nor a parallel setting without tools: nothing to choose among.
    await provider.complete(
        request(
            [Message("user", "hi"), Message("assistant", ""), Message("user", "again")],
            parallel_tool_calls=False,
            tool_choice=ToolChoice("auto"),
        )
    )
    assert sent(fake) == {
        "model": "claude-t",
        "max_tokens": 100,
        "stream": False,
        # An empty assistant turn says nothing (Anthropic refuses empty text blocks), and the
        # user turns around it become one.
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}],
            }
        ],
    }


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]", '"text"', "[" * 100_000])
async def test_tool_call_arguments_that_are_no_object_are_sent_as_an_empty_input(
    fake: FakeUpstream, provider: AnthropicProvider, arguments: str
) -> None:
    await provider.complete(
        request(
            [
                Message("user", "weather?"),
                Message("assistant", [ToolCall("toolu_9", "get_weather", arguments)]),
                Message("tool", [ToolResult("toolu_9", ())]),
            ],
            tools=(WEATHER,),
        )
    )
    messages = sent(fake)["messages"]
    assert messages[1]["content"] == [
        {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}
    ]
    # A result without content carries none (an empty text block would be refused).
    assert messages[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_9"}]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png,not-base64", "base64"),
        (f"data:image/svg+xml;base64,{PNG}", "image/svg+xml"),
    ],
)
async def test_an_image_anthropic_cannot_read_is_refused_before_the_call(
    fake: FakeUpstream, provider: AnthropicProvider, url: str, message: str
) -> None:
    with pytest.raises(UpstreamError) as refused:
        await provider.complete(request([Message("user", [ImagePart(url)])]))
    assert message in str(refused.value)
    assert (refused.value.retryable, refused.value.server_fault) == (False, False)
    assert fake.requests == []


# --------------------------------------------------------------------------- answers


async def test_tool_calls_and_cached_usage_come_back(
    fake: FakeUpstream, provider: AnthropicProvider
) -> None:
    calls = [
        FakeToolCall("get_weather", '{"city": "Paris", "units": "metric"}', id="toolu_a"),
        FakeToolCall("get_time", "{}", id="toolu_b"),
    ]
    behaviour = Behaviour(
        text="Checking.",
        tool_calls=calls,
        prompt_tokens=120,
        completion_tokens=30,
        cached_read_tokens=80,
        cached_write_tokens=25,
    )
    fake.script("claude-t", behaviour)
    completion = await provider.complete(
        request([Message("user", "weather and time?")], tools=(WEATHER, CLOCK))
    )
    assert completion.text == "Checking."
    assert completion.finish_reason == "tool_calls"
    assert [(c.id, c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("toolu_a", "get_weather", {"city": "Paris", "units": "metric"}),
        ("toolu_b", "get_time", {}),
    ]
    # Anthropic's input_tokens (15) excludes the cache; the canonical prompt is all of it.
    assert completion.usage == Usage(120, 30, cached_read_tokens=80, cached_write_tokens=25)


async def test_streamed_tool_calls_reassemble(
    fake: FakeUpstream, provider: AnthropicProvider
) -> None:
    calls = [
        FakeToolCall("get_weather", '{"city": "Paris", "units": "metric"}', id="toolu_a"),
        FakeToolCall("get_time", "{}", id="toolu_b"),
    ]
    fake.script(
        "claude-t",
        Behaviour(
            text="Checking both.",
            tool_calls=calls,
            prompt_tokens=50,
            completion_tokens=12,
            cached_read_tokens=40,
        ),
    )
    events = await collect(
        provider, request([Message("user", "weather and time?")], tools=(WEATHER, CLOCK))
    )
    text, tool_calls, end = reassemble(events)
    assert text == "Checking both."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in tool_calls] == [
        ("toolu_a", "get_weather", {"city": "Paris", "units": "metric"}),
        ("toolu_b", "get_time", {}),
    ]
    pieces = [e for e in events if isinstance(e, ToolCallDelta) and e.index == 0 and e.arguments]
    assert len(pieces) >= 3  # the arguments arrived as input_json_delta pieces
    assert end == StreamEnd(Usage(50, 12, cached_read_tokens=40), "tool_calls")
    assert sent(fake)["stream"] is True


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_json_schema_goes_through_a_forced_tool_and_comes_back_as_text(
    fake: FakeUpstream, provider: AnthropicProvider, streaming: bool
) -> None:
    answer = {"city": "Paris", "celsius": 18.5}
    fake.script("claude-t", Behaviour(text=json.dumps(answer), prompt_tokens=30))
    fmt = ResponseFormat("json_schema", schema=SCHEMA, name="weather", description="A report")
    req = request([Message("user", "weather in Paris as JSON")], response_format=fmt)
    if streaming:
        text, tool_calls, end = reassemble(await collect(provider, req))
        assert tool_calls == []
        finish, usage = end.finish_reason, end.usage
    else:
        completion = await provider.complete(req)
        assert completion.tool_calls == ()
        text, finish, usage = completion.text, completion.finish_reason, completion.usage
    assert json.loads(text) == answer
    assert finish == "stop"  # the forced tool was the answer, not a call for the caller
    assert usage == Usage(30, 7)
    body = sent(fake)
    assert body["tools"] == [{"name": "weather", "description": "A report", "input_schema": SCHEMA}]
    assert body["tool_choice"] == {"type": "tool", "name": "weather"}


async def test_json_mode_forces_a_tool_of_any_object(
    fake: FakeUpstream, provider: AnthropicProvider
) -> None:
    fake.script("claude-t", Behaviour(text='{"ok": true}'))
    # A name Anthropic would not take as a tool name gives way to the default one.
    fmt = ResponseFormat("json_object", name="not a tool name!")
    completion = await provider.complete(request([Message("user", "JSON")], response_format=fmt))
    assert json.loads(completion.text) == {"ok": True}
    body = sent(fake)
    assert [(t["name"], t["input_schema"]) for t in body["tools"]] == [
        (JSON_TOOL, {"type": "object"})
    ]
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


async def test_a_schema_without_a_root_type_is_taken_as_an_object(
    fake: FakeUpstream, provider: AnthropicProvider
) -> None:
    schema = {"properties": {"ok": {"type": "boolean"}}}
    fmt = ResponseFormat("json_schema", schema=schema)
    await provider.complete(request([Message("user", "JSON")], response_format=fmt))
    assert sent(fake)["tools"][0]["input_schema"] == {**schema, "type": "object"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {
                "tools": (WEATHER,),
                "response_format": ResponseFormat("json_schema", schema=SCHEMA, name="weather"),
            },
            "tools and a response format",
        ),
        (
            {"response_format": ResponseFormat("json_schema", schema={"type": "array"})},
            "root is not an object",
        ),
    ],
)
async def test_what_a_forced_tool_cannot_carry_is_refused_before_the_call(
    fake: FakeUpstream, provider: AnthropicProvider, settings: dict[str, Any], message: str
) -> None:
    req = request([Message("user", "weather")], **settings)
    with pytest.raises(UpstreamError) as refused:
        await provider.complete(req)
    assert message in str(refused.value)
    assert (refused.value.retryable, refused.value.server_fault) == (False, False)
    with pytest.raises(UpstreamError):
        await collect(provider, req)
    assert fake.requests == []


@pytest.mark.parametrize("streaming", [False, True])
async def test_thinking_blocks_are_not_the_answer(
    fake: FakeUpstream, provider: AnthropicProvider, streaming: bool
) -> None:
    fake.script(
        "claude-t",
        Behaviour(text="Forty-two.", reasoning_tokens=9, completion_tokens=20, finish="length"),
    )
    req = request([Message("user", "the answer?")])
    completion: Completion | StreamEnd
    if streaming:
        events = await collect(provider, req)
        text, _, completion = reassemble(events)
    else:
        completion = await provider.complete(req)
        text = completion.text
    assert text == "Forty-two."
    assert completion.finish_reason == "length"
    # Thinking is inside output_tokens already; output_tokens_details says how much.
    assert completion.usage == Usage(20, 20, reasoning_tokens=9)


# --------------------------------------------------------------------------- the fake itself


@pytest.mark.parametrize("streaming", [False, True])
async def test_the_official_client_reads_the_fakes_tool_use_thinking_and_cache_usage(
    fake: FakeUpstream, streaming: bool
) -> None:
    """The fake's Anthropic answers parse in the anthropic SDK as the real API's do."""
    fake.script(
        "claude-sdk",
        Behaviour(
            text="Checking.",
            tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}', id="toolu_s")],
            prompt_tokens=100,
            completion_tokens=40,
            cached_read_tokens=60,
            cached_write_tokens=30,
            reasoning_tokens=11,
        ),
    )
    params: Any = {
        "model": "claude-sdk",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"name": "get_weather", "input_schema": dict(WEATHER.parameters)}],
    }
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="key", max_retries=0
    ) as claude:
        if streaming:
            async with claude.messages.stream(**params) as stream:
                kinds = [event.type async for event in stream]
                message = await stream.get_final_message()
            assert {"thinking", "signature", "text", "input_json"} <= set(kinds)
        else:
            message = await claude.messages.create(**params)
    thinking, text, tool_use = message.content
    assert thinking.type == "thinking"
    assert (bool(thinking.thinking), bool(thinking.signature)) == (True, True)
    assert text.type == "text"
    assert text.text == "Checking."
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.name, tool_use.input) == (
        "toolu_s",
        "get_weather",
        {"city": "Paris"},
    )
    assert message.stop_reason == "tool_use"
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (10, 40)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (60, 30)
    assert usage.output_tokens_details is not None
    assert usage.output_tokens_details.thinking_tokens == 11


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(("kind", "status"), [("429", 429), ("500", 500), ("malformed", None)])
async def test_upstream_failures_are_retryable_upstream_errors(
    fake: FakeUpstream, provider: AnthropicProvider, streaming: bool, kind: Kind, status: int | None
) -> None:
    fake.script("claude-t", Behaviour(kind=kind))
    req = request([Message("user", "hi")], tools=(WEATHER,))
    with pytest.raises(UpstreamError) as failed:
        if streaming:
            await collect(provider, req)
        else:
            await provider.complete(req)
    assert (failed.value.status, failed.value.retryable) == (status, True)
