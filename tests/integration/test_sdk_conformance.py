"""The same client journeys through every upstream protocol: the `openai` SDK (chat with tools
streaming and not, a tool result round trip, structured output with `parse`, the Responses API
with tools streaming and not) and LangChain's tool-calling agent loop, each against a running
mtai whose model is served by the OpenAI-compatible, the Anthropic or the Bedrock fake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from mtai.runtime import Runtime
from mtai.services.catalog import ModelSpec
from tests.conftest import TenantFixture, add_model
from tests.support.fake_upstreams import Behaviour, FakeToolCall, FakeUpstream

PROVIDERS = ["openai", "anthropic", "bedrock"]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ARGUMENTS = '{"city": "Paris"}'


class Weather(BaseModel):
    city: str
    celsius: float


@pytest.fixture
async def sdk(live_server: str, tenant_a: TenantFixture) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=f"{live_server}/v1", api_key=tenant_a.key, max_retries=0)
    yield client
    await client.close()


@pytest.fixture(params=PROVIDERS)
async def model(
    request: pytest.FixtureRequest, runtime: Runtime, fake_upstream: FakeUpstream
) -> ModelSpec:
    return await add_model(runtime, fake_upstream, request.param)


def last_sent(fake: FakeUpstream, spec: ModelSpec) -> Any:
    return [r for r in fake.requests if r.model == spec.upstream_model][-1].json


def holds_result(body: Any, text: str) -> bool:
    """Whether an upstream request carries the tool result `text`, in any protocol's form."""
    return text in str(body)


def call(call_id: str = "call_w1") -> Behaviour:
    return Behaviour(text="", tool_calls=[FakeToolCall("get_weather", ARGUMENTS, id=call_id)])


async def test_chat_tool_call_streaming_and_not_then_the_result_round_trip(
    sdk: openai.AsyncOpenAI, model: ModelSpec, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script(model.upstream_model, call("call_w1"), call("call_w2"))
    fake_upstream.script(model.upstream_model, Behaviour(text="It is 18 C in Paris."))
    question = [{"role": "user", "content": "Weather in Paris?"}]
    completion = await sdk.chat.completions.create(
        model=model.name, messages=question, tools=[WEATHER]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    first = choice.message.tool_calls[0]
    assert first.function.name == "get_weather"
    assert first.function.arguments.replace(" ", "") == ARGUMENTS.replace(" ", "")

    stream = await sdk.chat.completions.create(
        model=model.name, messages=question, tools=[WEATHER], stream=True
    )
    pieces: dict[int, list[str]] = {}
    names, finishes = [], []
    async for chunk in stream:
        for delta_choice in chunk.choices:
            finishes.append(delta_choice.finish_reason)
            for piece in delta_choice.delta.tool_calls or []:
                if piece.function and piece.function.name:
                    names.append(piece.function.name)
                pieces.setdefault(piece.index, []).append(
                    (piece.function.arguments or "") if piece.function else ""
                )
    assert names == ["get_weather"]
    assert "".join(pieces[0]).replace(" ", "") == ARGUMENTS.replace(" ", "")
    assert "tool_calls" in finishes

    answer = await sdk.chat.completions.create(
        model=model.name,
        tools=[WEATHER],
        messages=[
            *question,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": first.id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ARGUMENTS},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": first.id, "content": "18 C and sunny"},
        ],
    )
    assert answer.choices[0].message.content == "It is 18 C in Paris."
    assert holds_result(last_sent(fake_upstream, model), "18 C and sunny")


async def test_structured_output_with_parse(
    sdk: openai.AsyncOpenAI, model: ModelSpec, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script(model.upstream_model, Behaviour(text='{"city": "Paris", "celsius": 18.5}'))
    parsed = await sdk.chat.completions.parse(
        model=model.name,
        messages=[{"role": "user", "content": "Weather in Paris as JSON."}],
        response_format=Weather,
    )
    assert parsed.choices[0].message.parsed == Weather(city="Paris", celsius=18.5)
    body = last_sent(fake_upstream, model)
    # The schema reached the upstream in that protocol's form (response_format or a tool).
    assert "celsius" in str(body)


async def test_responses_with_tools_streaming_and_not(
    sdk: openai.AsyncOpenAI, model: ModelSpec, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script(model.upstream_model, call("call_r1"), call("call_r2"))
    fake_upstream.script(model.upstream_model, Behaviour(text="18 C and sunny in Paris."))
    tool: Any = {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER["function"]["parameters"],
        "strict": False,
    }
    response = await sdk.responses.create(model=model.name, input="Weather in Paris?", tools=[tool])
    calls = [item for item in response.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather"]

    kinds = []
    stream = await sdk.responses.create(
        model=model.name, input="Weather in Paris?", tools=[tool], stream=True
    )
    async for event in stream:
        kinds.append(event.type)
    assert kinds[0] == "response.created"
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-1] == "response.completed"

    answer = await sdk.responses.create(
        model=model.name,
        tools=[tool],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": calls[0].call_id,
                "name": "get_weather",
                "arguments": calls[0].arguments,
            },
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 C"},
        ],
    )
    assert answer.output_text == "18 C and sunny in Paris."
    assert holds_result(last_sent(fake_upstream, model), "18 C")


async def test_langchain_tool_agent_loop(
    live_server: str, tenant_a: TenantFixture, model: ModelSpec, fake_upstream: FakeUpstream
) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    fake_upstream.script(model.upstream_model, call("call_l1"))
    fake_upstream.script(model.upstream_model, Behaviour(text="It is sunny in Paris."))
    chat = ChatOpenAI(
        base_url=f"{live_server}/v1", api_key=tenant_a.key, model=model.name, max_retries=0
    ).bind_tools([get_weather])
    history: list[Any] = [HumanMessage("What is the weather in Paris?")]
    reply = await chat.ainvoke(history)
    history.append(reply)
    assert [c["name"] for c in reply.tool_calls] == ["get_weather"]
    for requested in reply.tool_calls:
        result = await asyncio.to_thread(get_weather.invoke, requested["args"])
        history.append(ToolMessage(result, tool_call_id=requested["id"]))
    final = await chat.ainvoke(history)
    assert final.content == "It is sunny in Paris."
    assert holds_result(last_sent(fake_upstream, model), "sunny in Paris")
