"""The OpenAI-compatible adapter against the wire-format fake over HTTP (every canonical field
forwarded exactly, tool calls and usage details parsed, streaming reassembled), and the local
llama.cpp model honouring stop, seed and a JSON grammar."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from mtai.providers.llm.base import (
    CompletionRequest,
    Delta,
    StreamEnd,
    StreamEvent,
    ToolCallDelta,
    UpstreamError,
)
from mtai.providers.llm.conversation import (
    Generation,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Usage,
)
from mtai.providers.llm.local_llama import LocalLlamaProvider
from mtai.providers.llm.openai_compat import OpenAICompatProvider
from tests.support.fake_upstreams import Behaviour, FakeToolCall, FakeUpstream, RecordedRequest

PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAF"
    "AAH/iZk9HQAAAABJRU5ErkJggg=="
)
WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city now.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    strict=True,
)
EVERYTHING = Generation(
    temperature=0.3,
    top_p=0.9,
    stop=("\nEND", "###"),
    seed=42,
    presence_penalty=0.5,
    frequency_penalty=-0.25,
    logit_bias={"50256": -100.0, "1820": 2.5},
    logprobs=True,
    top_logprobs=3,
    user="end-user-7",
    tools=(WEATHER, ToolSpec(name="now")),
    tool_choice=ToolChoice("tool", "get_weather"),
    parallel_tool_calls=False,
    response_format=ResponseFormat(
        "json_schema",
        schema={"type": "object", "properties": {"a": {"type": "integer"}}},
        name="answer",
        description="The answer object.",
        strict=True,
    ),
)
CONVERSATION = [
    Message("system", "Be brief."),
    Message(
        "user",
        [
            TextPart("What is in these pictures, and the weather?"),
            ImagePart("https://images.example/cat.jpg", "high"),
            ImagePart(PNG),
        ],
    ),
    Message(
        "assistant",
        [
            TextPart("Let me look it up."),
            ToolCall("call_a", "get_weather", '{"city":"Paris","unit":"c"}'),
            ToolCall("call_b", "now", "{}"),
        ],
    ),
    Message(
        "tool",
        [
            ToolResult("call_a", (TextPart("18 degrees"), TextPart(", sunny"))),
            ToolResult("call_b", (TextPart("clock unavailable"),), is_error=True),
        ],
    ),
    Message("assistant", [ToolCall("call_c", "now", "{}")]),
    Message("tool", [ToolResult("call_c", (TextPart("12:00"),))]),
    Message("user", "Thanks."),
]


@pytest.fixture
async def provider(fake_upstream: FakeUpstream) -> AsyncIterator[OpenAICompatProvider]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield OpenAICompatProvider(f"{fake_upstream.base_url}/v1", "platform-key", http)


def model_name() -> str:
    return f"up-h1-{secrets.token_hex(3)}"


def recorded(fake: FakeUpstream, model: str) -> RecordedRequest:
    (only,) = [r for r in fake.requests if r.model == model]
    return only


def request(
    model: str, generation: Generation, messages: list[Message] | None = None
) -> CompletionRequest:
    return CompletionRequest(model, messages or CONVERSATION, 64, generation)


async def test_every_field_reaches_the_upstream_in_openai_shape(
    provider: OpenAICompatProvider, fake_upstream: FakeUpstream
) -> None:
    model = model_name()
    await provider.complete(request(model, EVERYTHING))
    body = recorded(fake_upstream, model).json
    assert body == {
        "model": model,
        "max_tokens": 64,
        "stream": False,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these pictures, and the weather?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://images.example/cat.jpg", "detail": "high"},
                    },
                    {"type": "image_url", "image_url": {"url": PNG}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me look it up.",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city":"Paris","unit":"c"}',
                        },
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "now", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "18 degrees, sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "Error: clock unavailable"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_c",
                        "type": "function",
                        "function": {"name": "now", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_c", "content": "12:00"},
            {"role": "user", "content": "Thanks."},
        ],
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["\nEND", "###"],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.25,
        "logit_bias": {"50256": -100.0, "1820": 2.5},
        "logprobs": True,
        "top_logprobs": 3,
        "user": "end-user-7",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city now.",
                    "parameters": dict(WEATHER.parameters),
                    "strict": True,
                },
            },
            {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
                "description": "The answer object.",
                "strict": True,
            },
        },
    }


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (ToolChoice("auto"), "auto"),
        (ToolChoice("none"), "none"),
        (ToolChoice("required"), "required"),
    ],
)
async def test_tool_choice_modes_and_json_mode(
    provider: OpenAICompatProvider, fake_upstream: FakeUpstream, choice: ToolChoice, wire: str
) -> None:
    model = model_name()
    generation = Generation(
        tools=(WEATHER,), tool_choice=choice, response_format=ResponseFormat("json_object")
    )
    await provider.complete(request(model, generation, [Message("user", "hi")]))
    body = recorded(fake_upstream, model).json
    assert body["tool_choice"] == wire
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    # Nothing the request did not ask for is sent.
    for absent in ("temperature", "top_p", "stop", "seed", "logprobs", "user", "logit_bias"):
        assert absent not in body


async def test_images_a_tool_returned_follow_the_tool_messages(
    provider: OpenAICompatProvider, fake_upstream: FakeUpstream
) -> None:
    model = model_name()
    messages = [
        Message("user", "Draw it"),
        Message("assistant", [ToolCall("c1", "draw", "{}"), ToolCall("c2", "draw", "{}")]),
        Message("tool", [ToolResult("c1", (TextPart("done"), ImagePart(PNG, "low")))]),
        Message("tool", [ToolResult("c2", (TextPart("done too"),))]),
    ]
    await provider.complete(request(model, Generation(), messages))
    sent = recorded(fake_upstream, model).json["messages"]
    # Both tool messages follow their assistant turn unbroken; the image comes after them.
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user"]
    assert sent[2] == {"role": "tool", "tool_call_id": "c1", "content": "done"}
    assert sent[4]["content"] == [
        {"type": "text", "text": "Images returned by tool call c1:"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
    ]


async def test_tool_calls_usage_details_and_logprobs_come_back(
    provider: OpenAICompatProvider, fake_upstream: FakeUpstream
) -> None:
    model = model_name()
    calls = [
        FakeToolCall("get_weather", '{"city": "Paris", "unit": "c"}', "call_1"),
        FakeToolCall("now", "{}", "call_2"),
    ]
    fake_upstream.script(
        model,
        Behaviour(
            text="",
            tool_calls=calls,
            prompt_tokens=120,
            completion_tokens=30,
            cached_read_tokens=100,
            cached_write_tokens=6,
            reasoning_tokens=12,
        ),
        Behaviour(text="Plain answer here.", finish="length"),
    )
    result = await provider.complete(request(model, Generation(tools=(WEATHER,))))
    assert result.text == ""
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == (
        ToolCall("call_1", "get_weather", '{"city": "Paris", "unit": "c"}'),
        ToolCall("call_2", "now", "{}"),
    )
    assert result.usage == Usage(
        120, 30, cached_read_tokens=100, cached_write_tokens=6, reasoning_tokens=12
    )
    assert result.logprobs is None  # not asked for
    plain = await provider.complete(request(model, Generation(logprobs=True, top_logprobs=2)))
    assert (plain.text, plain.finish_reason, plain.tool_calls) == (
        "Plain answer here.",
        "length",
        (),
    )
    tokens = plain.logprobs["content"]
    assert "".join(t["token"] for t in tokens) == "Plain answer here."
    assert all(len(t["top_logprobs"]) == 2 and t["logprob"] <= 0 for t in tokens)


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_streamed_tool_calls_reassemble_with_usage_details(
    provider: OpenAICompatProvider, fake_upstream: FakeUpstream
) -> None:
    model = model_name()
    calls = [
        FakeToolCall("get_weather", '{"city": "Paris", "unit": "c", "note": "a b c d"}', "call_1"),
        FakeToolCall("get_weather", '{"city": "Oslo", "unit": "f"}', "call_2"),
    ]
    fake_upstream.script(
        model,
        Behaviour(
            text="Checking both cities now.",
            tool_calls=calls,
            prompt_tokens=50,
            completion_tokens=40,
            cached_read_tokens=32,
            reasoning_tokens=8,
        ),
    )
    events = await collect(provider.stream(request(model, Generation(tools=(WEATHER,)))))
    sent = recorded(fake_upstream, model).json
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert text == "Checking both cities now."
    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(pieces) > 6  # the arguments came in several pieces per call
    for index, call in enumerate(calls):
        mine = [p for p in pieces if p.index == index]
        assert (mine[0].id, mine[0].name) == (call.id, call.name)
        assert all(p.id is None and p.name is None for p in mine[1:])
        assert "".join(p.arguments for p in mine) == call.arguments
        assert json.loads("".join(p.arguments for p in mine))
    assert events[-1] == StreamEnd(
        Usage(50, 40, cached_read_tokens=32, reasoning_tokens=8), "tool_calls"
    )


async def test_streamed_text_carries_logprobs(
    provider: OpenAICompatProvider, fake_upstream: FakeUpstream
) -> None:
    model = model_name()
    fake_upstream.script(model, Behaviour(text="One two three four five."))
    events = await collect(
        provider.stream(request(model, Generation(logprobs=True, top_logprobs=1)))
    )
    deltas = [e for e in events if isinstance(e, Delta)]
    assert "".join(d.text for d in deltas) == "One two three four five."
    for delta in deltas:
        assert [entry["token"] for entry in delta.logprobs] == [delta.text]
        assert len(delta.logprobs[0]["top_logprobs"]) == 1
    assert recorded(fake_upstream, model).json["top_logprobs"] == 1


# --------------------------------------------------------------------------- local llama.cpp


class Recording:
    """The loaded Llama, with the arguments of every create_completion call kept."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def create_completion(self, prompt: str, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self._llm.create_completion(prompt, **kwargs)


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[LocalLlamaProvider, Recording]]:
    provider = LocalLlamaProvider(None)
    recording = Recording(provider._load())
    provider._llm = recording
    yield provider, recording
    provider._llm = None


CAPITAL = ResponseFormat(
    "json_schema",
    schema={
        "type": "object",
        "properties": {"capital": {"enum": ["Paris", "Rome", "Berlin"]}},
        "required": ["capital"],
        "additionalProperties": False,
    },
    name="capital",
)


async def test_local_model_json_schema_seed_and_sampling_reach_llama_cpp(
    local: tuple[LocalLlamaProvider, Recording],
) -> None:
    provider, recording = local
    generation = Generation(
        temperature=0,
        top_p=0.8,
        top_k=20,
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        stop=("\nQ:",),
        response_format=CAPITAL,
    )
    messages = [Message("user", "What is the capital of France? Answer in JSON.")]
    result = await provider.complete(CompletionRequest("gemma", messages, 24, generation))
    kwargs = recording.calls[-1]
    assert {k: kwargs[k] for k in ("top_p", "top_k", "seed", "presence_penalty")} == {
        "top_p": 0.8,
        "top_k": 20,
        "seed": 7,
        "presence_penalty": 0.1,
    }
    assert kwargs["frequency_penalty"] == 0.2
    assert kwargs["temperature"] == 0
    assert kwargs["stop"][-1] == "\nQ:"
    assert "\nUser:" in kwargs["stop"]
    assert "capital" in kwargs["grammar"]._grammar
    assert json.loads(result.text)["capital"] in {"Paris", "Rome", "Berlin"}


async def test_local_model_stream_stops_at_a_stop_sequence(
    local: tuple[LocalLlamaProvider, Recording],
) -> None:
    provider, recording = local
    # The grammar forces {"capital": "<one of three>"}; stopping at `"capital"` cuts it there.
    generation = Generation(temperature=0, stop=('"capital"',), response_format=CAPITAL)
    messages = [Message("user", "What is the capital of Italy?")]
    events = await collect(provider.stream(CompletionRequest("gemma", messages, 24, generation)))
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert '"capital"' in recording.calls[-1]["stop"]
    assert recording.calls[-1]["stream"] is True
    assert text.strip() == "{"
    assert isinstance(events[-1], StreamEnd)
    assert events[-1].finish_reason == "stop"


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"type": "array", "maxItems": 10**9}, "maxItems"),
        ({"type": "string", "pattern": "((a{100}){100}){100}"}, "repetitions"),
        ({"$ref": "https://schemas.example/x.json"}, "AssertionError"),
        ({"$ref": "elsewhere.json"}, "Unsupported ref"),
        (nested(40), "nested"),
    ],
)
async def test_local_model_refuses_hostile_schemas_before_generating(
    local: tuple[LocalLlamaProvider, Recording], schema: Any, reason: str
) -> None:
    provider, recording = local
    before = len(recording.calls)
    generation = Generation(response_format=ResponseFormat("json_schema", schema=schema))
    with pytest.raises(UpstreamError, match=reason) as caught:
        await provider.complete(CompletionRequest("gemma", [Message("user", "x")], 8, generation))
    assert (caught.value.status, caught.value.retryable, caught.value.server_fault) == (
        400,
        False,
        False,
    )
    assert len(recording.calls) == before


def test_a_grammar_llama_cpp_cannot_parse_is_refused_not_crashed(
    local: tuple[LocalLlamaProvider, Recording],
) -> None:
    from mtai.providers.llm.local_llama import _checked_grammar

    _provider, recording = local
    with pytest.raises(UpstreamError, match="could not parse"):
        _checked_grammar(recording._llm, 'root ::= ( "unclosed"')
    assert _checked_grammar(recording._llm, 'root ::= "ok"')._grammar == 'root ::= "ok"'
