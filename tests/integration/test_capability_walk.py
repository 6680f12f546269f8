"""Every documented feature against every provider, through the chat-turn pipeline: what a
provider's table refuses is a 400 before any upstream call; what it accepts reaches the
upstream in that provider's own form (as the protocol-faithful fakes record it), or, for the
local model, reaches llama.cpp's arguments."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from mtai.providers.llm.capabilities import FEATURES, Support
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
    features,
)
from mtai.providers.llm.local_llama import LocalLlamaProvider
from mtai.providers.llm.registry import SUPPORT_BY_PROVIDER
from mtai.runtime import Runtime
from mtai.services.catalog import ModelSpec
from mtai.services.gateway import ChatInput, UnsupportedParameter
from mtai.services.principal import ALL_SCOPES, Principal, Role
from tests.conftest import TenantFixture, add_model
from tests.support.fake_upstreams import FakeUpstream

Body = dict[str, Any]
WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
SCHEMA = {
    "type": "object",
    "properties": {"capital": {"type": "string"}},
    "required": ["capital"],
    "additionalProperties": False,
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(32))
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
QUESTION = [Message("user", "What is the weather in Paris? Answer in JSON.")]
EXCHANGE = [
    Message("user", "What is the weather in Paris?"),
    Message("assistant", [ToolCall("call_1", "get_weather", '{"city": "Paris"}')]),
    Message("tool", [ToolResult("call_1", (TextPart("18 C and sunny"),))]),
]
TOOLS = Generation(tools=(WEATHER,))

# What each feature's request looks like: the conversation and its settings.
CASES: dict[str, tuple[list[Message], Generation]] = {
    "temperature": (QUESTION, Generation(temperature=0.3)),
    "top_p": (QUESTION, Generation(top_p=0.9)),
    "top_k": (QUESTION, Generation(top_k=5)),
    "stop": (QUESTION, Generation(stop=("END",))),
    "seed": (QUESTION, Generation(seed=7)),
    "presence_penalty": (QUESTION, Generation(presence_penalty=0.5)),
    "frequency_penalty": (QUESTION, Generation(frequency_penalty=0.25)),
    "logit_bias": (QUESTION, Generation(logit_bias={"50256": -100})),
    "logprobs": (QUESTION, Generation(logprobs=True, top_logprobs=2)),
    "user": (QUESTION, Generation(user="end-user-1")),
    "tools": (QUESTION, TOOLS),
    "tool_choice.auto": (QUESTION, Generation(tools=(WEATHER,), tool_choice=ToolChoice("auto"))),
    "tool_choice.none": (QUESTION, Generation(tools=(WEATHER,), tool_choice=ToolChoice("none"))),
    "tool_choice.required": (
        QUESTION,
        Generation(tools=(WEATHER,), tool_choice=ToolChoice("required")),
    ),
    "tool_choice.tool": (
        QUESTION,
        Generation(tools=(WEATHER,), tool_choice=ToolChoice("tool", "get_weather")),
    ),
    "parallel_tool_calls": (QUESTION, Generation(tools=(WEATHER,), parallel_tool_calls=False)),
    "tool_messages": (EXCHANGE, TOOLS),
    "response_format.json_object": (
        QUESTION,
        Generation(response_format=ResponseFormat("json_object")),
    ),
    "response_format.json_schema": (
        QUESTION,
        Generation(response_format=ResponseFormat("json_schema", schema=SCHEMA, name="capital")),
    ),
    "response_format.with_tools": (
        QUESTION,
        Generation(tools=(WEATHER,), response_format=ResponseFormat("json_object")),
    ),
    "image_data": (
        [Message("user", [TextPart("What is this?"), ImagePart(DATA_URL)])],
        Generation(),
    ),
    "image_url": (
        [Message("user", [TextPart("What is this?"), ImagePart("https://example.com/cat.png")])],
        Generation(),
    ),
}


def _messages(body: Body) -> list[Body]:
    return list(body.get("messages") or [])


def _blocks(body: Body) -> list[Body]:
    return [b for m in _messages(body) if isinstance(m.get("content"), list) for b in m["content"]]


# How each accepted feature shows in what the upstream received, per wire protocol.
OPENAI: dict[str, Callable[[Body], bool]] = {
    "temperature": lambda b: b["temperature"] == 0.3,
    "top_p": lambda b: b["top_p"] == 0.9,
    "stop": lambda b: b["stop"] == ["END"],
    "seed": lambda b: b["seed"] == 7,
    "presence_penalty": lambda b: b["presence_penalty"] == 0.5,
    "frequency_penalty": lambda b: b["frequency_penalty"] == 0.25,
    "logit_bias": lambda b: b["logit_bias"] == {"50256": -100},
    "logprobs": lambda b: b["logprobs"] is True and b["top_logprobs"] == 2,
    "user": lambda b: b["user"] == "end-user-1",
    "tools": lambda b: b["tools"][0]["function"]["name"] == "get_weather",
    "tool_choice.auto": lambda b: b["tool_choice"] == "auto",
    "tool_choice.none": lambda b: b["tool_choice"] == "none",
    "tool_choice.required": lambda b: b["tool_choice"] == "required",
    "tool_choice.tool": lambda b: (
        b["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    ),
    "parallel_tool_calls": lambda b: b["parallel_tool_calls"] is False,
    "tool_messages": lambda b: (
        [m["role"] for m in _messages(b)] == ["user", "assistant", "tool"]
        and _messages(b)[2]["tool_call_id"] == "call_1"
    ),
    "response_format.json_object": lambda b: b["response_format"] == {"type": "json_object"},
    "response_format.json_schema": lambda b: (
        b["response_format"]["json_schema"]["schema"] == SCHEMA
    ),
    "response_format.with_tools": lambda b: "tools" in b and "response_format" in b,
    "image_data": lambda b: any(x.get("image_url", {}).get("url") == DATA_URL for x in _blocks(b)),
    "image_url": lambda b: any(
        x.get("image_url", {}).get("url") == "https://example.com/cat.png" for x in _blocks(b)
    ),
}
ANTHROPIC: dict[str, Callable[[Body], bool]] = {
    "temperature": lambda b: b["temperature"] == 0.3,
    "top_p": lambda b: b["top_p"] == 0.9,
    "top_k": lambda b: b["top_k"] == 5,
    "stop": lambda b: b["stop_sequences"] == ["END"],
    "user": lambda b: b["metadata"] == {"user_id": "end-user-1"},
    "tools": lambda b: (
        b["tools"][0]["name"] == "get_weather"
        and b["tools"][0]["input_schema"] == WEATHER.parameters
    ),
    "tool_choice.auto": lambda b: b["tool_choice"] == {"type": "auto"},
    "tool_choice.none": lambda b: b["tool_choice"] == {"type": "none"},
    "tool_choice.required": lambda b: b["tool_choice"] == {"type": "any"},
    "tool_choice.tool": lambda b: b["tool_choice"] == {"type": "tool", "name": "get_weather"},
    "parallel_tool_calls": lambda b: b["tool_choice"]["disable_parallel_tool_use"] is True,
    "tool_messages": lambda b: any(
        x.get("type") == "tool_result" and x["tool_use_id"] == "call_1" for x in _blocks(b)
    ),
    "response_format.json_object": lambda b: b["tool_choice"]["type"] == "tool",
    "response_format.json_schema": lambda b: (
        b["tool_choice"]["type"] == "tool" and b["tools"][0]["input_schema"] == SCHEMA
    ),
    "image_data": lambda b: any(
        x.get("type") == "image" and x["source"]["type"] == "base64" for x in _blocks(b)
    ),
    "image_url": lambda b: any(
        x.get("type") == "image"
        and x["source"] == {"type": "url", "url": "https://example.com/cat.png"}
        for x in _blocks(b)
    ),
}
BEDROCK: dict[str, Callable[[Body], bool]] = {
    "temperature": lambda b: b["inferenceConfig"]["temperature"] == 0.3,
    "top_p": lambda b: b["inferenceConfig"]["topP"] == 0.9,
    "stop": lambda b: b["inferenceConfig"]["stopSequences"] == ["END"],
    "user": lambda b: b["requestMetadata"] == {"user": "end-user-1"},
    "tools": lambda b: b["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather",
    "tool_choice.auto": lambda b: b["toolConfig"]["toolChoice"] == {"auto": {}},
    "tool_choice.none": lambda b: "toolConfig" not in b,
    "tool_choice.required": lambda b: b["toolConfig"]["toolChoice"] == {"any": {}},
    "tool_choice.tool": lambda b: (
        b["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    ),
    "tool_messages": lambda b: any(
        x.get("toolResult", {}).get("toolUseId") == "call_1" for x in _blocks(b)
    ),
    "response_format.json_object": lambda b: "tool" in b["toolConfig"]["toolChoice"],
    "response_format.json_schema": lambda b: (
        b["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"] == SCHEMA
    ),
    "image_data": lambda b: any(
        base64.b64decode(x.get("image", {}).get("source", {}).get("bytes", "")) == PNG
        for x in _blocks(b)
        if "image" in x
    ),
}
CHECKS = {"openai": OPENAI, "anthropic": ANTHROPIC, "bedrock": BEDROCK}
# llama.cpp's create_completion arguments for each accepted feature.
LOCAL: dict[str, Callable[[Body], bool]] = {
    "temperature": lambda k: k["temperature"] == 0.3,
    "top_p": lambda k: k["top_p"] == 0.9,
    "top_k": lambda k: k["top_k"] == 5,
    "stop": lambda k: "END" in k["stop"],
    "seed": lambda k: k["seed"] == 7,
    "presence_penalty": lambda k: k["presence_penalty"] == 0.5,
    "frequency_penalty": lambda k: k["frequency_penalty"] == 0.25,
    "response_format.json_object": lambda k: k["grammar"] is not None,
    "response_format.json_schema": lambda k: "capital" in k["grammar"]._grammar,
}


def owner(tenant: TenantFixture) -> Principal:
    return Principal(tenant_id=tenant.id, role=Role.OWNER, scopes=ALL_SCOPES)


def test_every_feature_has_a_case_and_each_case_uses_its_feature() -> None:
    assert set(CASES) == set(FEATURES)
    for feature, (messages, generation) in CASES.items():
        assert feature in features(messages, generation), feature


def test_every_accepted_feature_has_a_check_of_its_wire_form() -> None:
    for provider, checks in {**CHECKS, "local": LOCAL}.items():
        accepted = {f for f, s in SUPPORT_BY_PROVIDER[provider].items() if s is not Support.REFUSED}
        assert accepted == set(checks), provider


class Recording:
    """The loaded llama.cpp model, keeping the arguments of every create_completion call."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self.calls: list[Body] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def create_completion(self, prompt: str, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self._llm.create_completion(prompt, **kwargs)


@pytest.fixture(scope="module")
def recording() -> Recording:
    return Recording(LocalLlamaProvider(None)._load())


async def _model(runtime: Runtime, fake: FakeUpstream, provider: str) -> ModelSpec:
    if provider == "extractive":
        return (await runtime.catalog.models())["extractive"]
    if provider == "local":
        return await add_model(runtime, fake, "local", base_url=None, api_key=None)
    return await add_model(runtime, fake, provider, max_retries=0)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock", "local", "extractive"])
async def test_each_feature_through_each_provider(
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    recording: Recording,
    provider: str,
) -> None:
    spec = await _model(runtime, fake_upstream, provider)
    table = SUPPORT_BY_PROVIDER[provider]
    for feature in FEATURES:
        messages, generation = CASES[feature]
        chat = ChatInput(messages, model=spec.name, max_tokens=8, generation=generation)
        before = len(fake_upstream.requests)
        if table[feature] is Support.REFUSED:
            with pytest.raises(UnsupportedParameter) as refused:
                await runtime.gateway.prepare(owner(tenant_a), chat, api="openai")
            assert spec.name in refused.value.detail, feature
            assert len(fake_upstream.requests) == before, feature
            continue
        prepared = await runtime.gateway.prepare(owner(tenant_a), chat, api="openai")
        target = prepared.targets[0].provider
        if isinstance(target, LocalLlamaProvider):
            target._llm = recording
        await runtime.gateway.complete(prepared)
        if provider == "local":
            assert LOCAL[feature](recording.calls[-1]), feature
        elif provider in CHECKS:
            sent = [r for r in fake_upstream.requests if r.model == spec.upstream_model][-1]
            assert CHECKS[provider][feature](sent.json), (feature, sent.json)
