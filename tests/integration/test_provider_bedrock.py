"""The Bedrock adapter puts the whole canonical conversation to Converse / ConverseStream and
reads tool calls, JSON answers and usage back, through the real AWS SDK against the fake
upstream (which records what arrived on the wire)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mtai.providers.llm.base import CompletionRequest, UpstreamError
from mtai.providers.llm.bedrock import SUPPORT, BedrockProvider
from mtai.providers.llm.capabilities import Support, refused
from mtai.providers.llm.conversation import (
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
    features,
)
from tests.support.fake_upstreams import Behaviour, FakeToolCall, FakeUpstream

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
CLOCK = ToolSpec(name="get_time", parameters={"type": "object", "properties": {}})
CALL = ToolCall("tooluse_weather1", "get_weather", '{"city": "Paris"}')


@pytest.fixture
async def bedrock(fake_upstream: FakeUpstream) -> AsyncIterator[BedrockProvider]:
    provider = BedrockProvider(
        "us-east-1",
        endpoint_url=fake_upstream.base_url,
        access_key="AKIDEXAMPLE",
        secret_key="secret",
        timeout=10.0,
    )
    yield provider
    await provider.aclose()


@pytest.fixture
def model() -> str:
    """A model id of this test's own: the fake is shared by the whole session."""
    return f"anthropic.claude-test-{secrets.token_hex(4)}-v1:0"


def request(
    model: str, messages: list[Message] | None = None, **settings: Any
) -> CompletionRequest:
    return CompletionRequest(
        model=model,
        messages=messages or [Message("user", "What is the weather in Paris?")],
        max_tokens=256,
        generation=Generation(**settings),
    )


def sent(fake: FakeUpstream, model: str) -> dict[str, Any]:
    """The body of the one request the fake received for `model`."""
    bodies = [r.json for r in fake.requests if r.model == model]
    assert len(bodies) == 1
    body = bodies[0]
    assert isinstance(body, dict)
    return body


async def collect(provider: BedrockProvider, req: CompletionRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(req)]


def reassemble(events: list[StreamEvent]) -> list[ToolCall]:
    """Tool calls from their deltas, as an OpenAI client rebuilds them."""
    calls: dict[int, dict[str, str]] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            if event.index not in calls:
                assert event.id, "the first piece of a call names it"
                assert event.name
                calls[event.index] = {"id": event.id, "name": event.name, "arguments": ""}
            calls[event.index]["arguments"] += event.arguments
    return [ToolCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())]


# --------------------------------------------------------------------------- request


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (None, None),
        (ToolChoice("auto"), {"auto": {}}),
        (ToolChoice("required"), {"any": {}}),
        (ToolChoice("tool", "get_time"), {"tool": {"name": "get_time"}}),
    ],
)
async def test_tools_and_tool_choice_go_out_as_tool_config(
    fake_upstream: FakeUpstream,
    bedrock: BedrockProvider,
    model: str,
    choice: ToolChoice | None,
    wire: dict[str, Any] | None,
) -> None:
    await bedrock.complete(request(model, tools=(WEATHER, CLOCK), tool_choice=choice))
    config = sent(fake_upstream, model)["toolConfig"]
    assert config["tools"] == [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "The weather in a city",
                "inputSchema": {"json": dict(WEATHER.parameters)},
            }
        },
        {"toolSpec": {"name": "get_time", "inputSchema": {"json": dict(CLOCK.parameters)}}},
    ]
    assert config.get("toolChoice") == wire


async def test_tool_choice_none_without_tool_history_offers_no_tools(
    fake_upstream: FakeUpstream, bedrock: BedrockProvider, model: str
) -> None:
    answer = await bedrock.complete(
        request(model, tools=(WEATHER,), tool_choice=ToolChoice("none"))
    )
    assert answer.text == "Hello from the fake upstream."
    assert "toolConfig" not in sent(fake_upstream, model)
    assert SUPPORT["tool_choice.none"] is Support.TRANSLATED


async def test_tool_results_travel_in_user_messages_merged_to_alternate(
    fake_upstream: FakeUpstream, bedrock: BedrockProvider, model: str
) -> None:
    failed = ToolCall("tooluse_clock1", "get_time", "{}")
    conversation = [
        Message("system", "You answer briefly."),
        Message("user", "Weather and time in Paris?"),
        Message("assistant", [TextPart("Let me look."), CALL, failed]),
        Message(
            "tool",
            [ToolResult(CALL.id, (TextPart("18C, sunny"), ImagePart(PNG_URL)))],
        ),
        Message("tool", [ToolResult(failed.id, (TextPart("clock offline"),), is_error=True)]),
        Message("user", "And tomorrow?"),
    ]
    answer = await bedrock.complete(request(model, conversation, tools=(WEATHER, CLOCK)))
    assert answer.text == "Hello from the fake upstream."  # the fake took the order
    body = sent(fake_upstream, model)
    assert body["system"] == [{"text": "You answer briefly."}]
    png = base64.b64encode(PNG).decode()
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Weather and time in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"text": "Let me look."},
                {
                    "toolUse": {
                        "toolUseId": CALL.id,
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                },
                {"toolUse": {"toolUseId": failed.id, "name": "get_time", "input": {}}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": CALL.id,
                        "content": [
                            {"text": "18C, sunny"},
                            {"image": {"format": "png", "source": {"bytes": png}}},
                        ],
                    }
                },
                {
                    "toolResult": {
                        "toolUseId": failed.id,
                        "content": [{"text": "clock offline"}],
                        "status": "error",
                    }
                },
                {"text": "And tomorrow?"},
            ],
        },
    ]


async def test_image_parts_go_out_as_bytes_base64_on_the_wire(
    fake_upstream: FakeUpstream, bedrock: BedrockProvider, model: str
) -> None:
    gif = b"GIF89a" + b"\x00" * 10
    message = Message(
        "user",
        [
            TextPart("What are these?"),
            ImagePart(PNG_URL),
            ImagePart("data:IMAGE/GIF;base64," + base64.b64encode(gif).decode(), "low"),
        ],
    )
    await bedrock.complete(request(model, [message]))
    assert sent(fake_upstream, model)["messages"] == [
        {
            "role": "user",
            "content": [
                {"text": "What are these?"},
                {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG).decode()}}},
                {"image": {"format": "gif", "source": {"bytes": base64.b64encode(gif).decode()}}},
            ],
        }
    ]


async def test_sampling_stop_and_user_go_to_inference_config_and_metadata(
    fake_upstream: FakeUpstream, bedrock: BedrockProvider, model: str
) -> None:
    await bedrock.complete(
        request(model, temperature=1.6, top_p=0.3, stop=("END", "\n\n"), user="user-42@acme")
    )
    body = sent(fake_upstream, model)
    assert body["inferenceConfig"] == {
        "maxTokens": 256,
        "temperature": 1.0,  # Converse's range ends at 1
        "topP": 0.3,
        "stopSequences": ["END", "\n\n"],
    }
    assert body["requestMetadata"] == {"user": "user-42@acme"}
    assert "toolConfig" not in body


# --------------------------------------------------------------------------- answers


async def test_tool_calls_come_back_with_usage_and_cache_tokens(
    fake_upstream: FakeUpstream, bedrock: BedrockProvider, model: str
) -> None:
    fake_upstream.script(
        model,
        Behaviour(
            text="Checking.",
            tool_calls=[
                FakeToolCall("get_weather", '{"city": "Paris", "unit": "C"}', id="tooluse_a"),
                FakeToolCall("get_time", "{}", id="tooluse_b"),
            ],
            prompt_tokens=40,
            completion_tokens=9,
            cached_read_tokens=25,
            cached_write_tokens=5,
        ),
    )
    answer = await bedrock.complete(request(model, tools=(WEATHER, CLOCK)))
    assert answer.text == "Checking."
    assert answer.tool_calls == (
        ToolCall("tooluse_a", "get_weather", '{"city": "Paris", "unit": "C"}'),
        ToolCall("tooluse_b", "get_time", "{}"),
    )
    assert answer.finish_reason == "tool_calls"
    # On the wire inputTokens was 10: the cached 30 are reported beside it.
    assert answer.usage == Usage(40, 9, cached_read_tokens=25, cached_write_tokens=5)


async def test_streamed_tool_calls_reassemble(
    fake_upstream: FakeUpstream, bedrock: BedrockProvider, model: str
) -> None:
    arguments = '{"city": "Paris", "unit": "celsius", "days": 3}'
    fake_upstream.script(
        model,
        Behaviour(
            text="Checking the weather now.",
            tool_calls=[
                FakeToolCall("get_weather", arguments, id="tooluse_a"),
                FakeToolCall("get_time", "", id="tooluse_b"),  # no input pieces at all
            ],
            prompt_tokens=12,
            completion_tokens=30,
            cached_read_tokens=4,
            cached_write_tokens=2,
        ),
    )
    events = await collect(bedrock, request(model, tools=(WEATHER, CLOCK)))
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "Checking the weather now."
    pieces = [e for e in events if isinstance(e, ToolCallDelta) and e.index == 0]
    assert len([p for p in pieces if p.arguments]) >= 3  # the input came in pieces
    assert reassemble(events) == [
        ToolCall("tooluse_a", "get_weather", arguments),
        ToolCall("tooluse_b", "get_time", "{}"),  # an empty input still reads as an object
    ]
    assert events[-1] == StreamEnd(Usage(12, 30, 4, 2), "tool_calls")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_json_schema_is_a_forced_tool_whose_input_is_the_text(
    fake_upstream: FakeUpstream, bedrock: BedrockProvider, model: str, stream: bool
) -> None:
    schema = {"type": "object", "properties": {"temp": {"type": "number"}}}
    fake_upstream.script(
        model,
        Behaviour(text="", tool_calls=[FakeToolCall("weather_report", '{"temp": 18.5}')]),
    )
    req = request(
        model,
        response_format=ResponseFormat("json_schema", schema, name="weather_report"),
    )
    if stream:
        events = await collect(bedrock, req)
        assert not [e for e in events if isinstance(e, ToolCallDelta)]
        text = "".join(e.text for e in events if isinstance(e, Delta))
        assert len([e for e in events if isinstance(e, Delta)]) >= 3
        end = events[-1]
        assert isinstance(end, StreamEnd)
        finish = end.finish_reason
    else:
        answer = await bedrock.complete(req)
        assert answer.tool_calls == ()
        text, finish = answer.text, answer.finish_reason
    assert json.loads(text) == {"temp": 18.5}
    assert finish == "stop"
    config = sent(fake_upstream, model)["toolConfig"]
    assert config == {
        "tools": [
            {
                "toolSpec": {
                    "name": "weather_report",
                    "description": "Give the answer as this tool's input.",
                    "inputSchema": {"json": schema},
                }
            }
        ],
        "toolChoice": {"tool": {"name": "weather_report"}},
    }


async def test_json_object_forces_a_tool_taking_any_object(
    fake_upstream: FakeUpstream, bedrock: BedrockProvider, model: str
) -> None:
    fake_upstream.script(
        model, Behaviour(text="", tool_calls=[FakeToolCall("json_answer", '{"ok": true}')])
    )
    answer = await bedrock.complete(request(model, response_format=ResponseFormat("json_object")))
    assert json.loads(answer.text) == {"ok": True}
    assert answer.finish_reason == "stop"
    config = sent(fake_upstream, model)["toolConfig"]
    assert config["toolChoice"] == {"tool": {"name": "json_answer"}}
    assert config["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object"}}


# --------------------------------------------------------------------------- refusals


def test_https_image_urls_are_refused_by_the_table() -> None:
    """Bedrock takes bytes or S3 only; fetching a URL the client chose would be SSRF."""
    messages = [Message("user", [ImagePart("https://169.254.169.254/latest/meta-data")])]
    used = features(messages, Generation())
    assert refused(SUPPORT, used, {}) == ["image_url"]
    assert SUPPORT["image_data"] is Support.TRANSLATED


@pytest.mark.parametrize(
    ("messages", "settings", "words"),
    [
        (
            [Message("user", [ImagePart("data:image/bmp;base64,Qk0=")])],
            {},
            "png, jpeg, gif and webp",
        ),
        (
            [Message("user", [ImagePart("data:image/png;base64,not base64!")])],
            {},
            "valid base64",
        ),
        (
            [Message("user", [ImagePart("data:image/png,rawbytes")])],
            {},
            "base64 data URLs",
        ),
        (
            [
                Message("user", "Weather?"),
                Message("assistant", [CALL]),
                Message("tool", [ToolResult(CALL.id, (TextPart("18C"),))]),
            ],
            {"tools": (WEATHER,), "tool_choice": ToolChoice("none")},
            "tool_choice none",
        ),
        (
            [
                Message("user", "Weather?"),
                Message("assistant", [CALL]),
                Message("tool", [ToolResult(CALL.id, (TextPart("18C"),))]),
            ],
            {},
            "send `tools`",
        ),
        (
            None,
            {"tools": (WEATHER,), "response_format": ResponseFormat("json_object")},
            "both tools and a response_format",
        ),
        (None, {"user": "name\u00e9<script>"}, "`user`"),
        (
            [Message("assistant", [ToolCall("t1", "get_weather", '["not", "an object"]')])],
            {"tools": (WEATHER,)},
            "not a JSON object",
        ),
        (
            [Message("assistant", [ToolCall("t1", "get_weather", "[" * 200_000)])],
            {"tools": (WEATHER,)},
            "not a JSON object",
        ),
        (None, {"stop": ("",)}, "does not fit Bedrock's Converse API"),
    ],
    ids=[
        "bmp",
        "bad-base64",
        "not-base64-url",
        "none-with-tool-history",
        "tool-history-without-tools",
        "tools-and-response-format",
        "user-characters",
        "arguments-not-object",
        "arguments-too-deep",
        "empty-stop-sequence",
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_what_bedrock_cannot_take_is_a_clear_client_error_before_any_call(
    fake_upstream: FakeUpstream,
    bedrock: BedrockProvider,
    model: str,
    messages: list[Message] | None,
    settings: dict[str, Any],
    words: str,
    stream: bool,
) -> None:
    req = request(model, messages, **settings)
    with pytest.raises(UpstreamError) as caught:
        if stream:
            await collect(bedrock, req)
        else:
            await bedrock.complete(req)
    assert words in str(caught.value)
    assert not caught.value.retryable
    assert not caught.value.server_fault
    assert not [r for r in fake_upstream.requests if r.model == model]


async def test_tool_arguments_nested_to_the_stack_limit_are_client_errors_at_every_depth(
    fake_upstream: FakeUpstream, bedrock: BedrockProvider, model: str
) -> None:
    """Arguments JSON parses up to the interpreter's recursion limit, and botocore serializes
    it a few frames deeper: from the deepest down to the first that goes through, each depth
    is refused as the caller's error (never a RecursionError escaping as a 500)."""
    refusals: set[tuple[str, bool, bool]] = set()
    for depth in range(1000, 0, -1):
        arguments = '{"a": ' + "[" * depth + "]" * depth + "}"
        conversation = [
            Message("user", "Weather?"),
            Message("assistant", [ToolCall("t1", "get_weather", arguments)]),
            Message("tool", [ToolResult("t1", (TextPart("18C"),))]),
        ]
        try:
            await bedrock.complete(request(model, conversation, tools=(WEATHER,)))
        except UpstreamError as exc:
            refusals.add((str(exc), exc.retryable, exc.server_fault))
        else:
            break
    assert refusals == {
        (
            "the arguments of tool call 't1' are not a JSON object; Bedrock takes them only as one",
            False,
            False,
        ),
        ("the request nests JSON deeper than Bedrock's client can send", False, False),
    }
    assert len([r for r in fake_upstream.requests if r.model == model]) == 1
