"""The OpenAI Responses API with the official `openai` SDK over real HTTP: `responses.create`
(text and items input, instructions, function tools, function-call outputs, text.format,
streaming with the semantic events), `responses.parse`, stored conversations continued by
`previous_response_id`, retrieve and delete; what the fake upstream received is checked."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, cast

import httpx
import openai
import pytest
from alembic import command
from openai.types.responses import FunctionToolParam, ResponseFunctionToolCall
from pydantic import BaseModel
from sqlalchemy import func, pool, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from mtai.db.engine import async_url
from mtai.db.migrate import alembic_config
from mtai.db.models import StoredResponse
from mtai.runtime import Runtime
from mtai.services.catalog import ModelSpec
from tests.conftest import TenantFixture, add_model
from tests.integration.test_gateway import usage_row
from tests.support.fake_upstreams import Behaviour, FakeToolCall, FakeUpstream
from tests.support.postgres import fresh_database

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "strict": True,
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


def sdk(live_server: str, tenant: TenantFixture) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server}/v1", api_key=tenant.key, max_retries=0)


def retrieve(client: openai.OpenAI, response_id: str) -> openai.types.responses.Response:
    return client.responses.retrieve(response_id)


def received(fake: FakeUpstream, spec: ModelSpec) -> list[dict[str, Any]]:
    """The bodies the fake upstream got for this model, oldest first."""
    return [r.json for r in fake.requests if r.model == spec.upstream_model]


async def stored_count(runtime: Runtime, tenant: TenantFixture) -> int:
    async with runtime.db.platform() as session:
        found = await session.execute(
            select(func.count())
            .select_from(StoredResponse)
            .where(StoredResponse.tenant_id == tenant.id)
        )
        return int(found.scalar_one())


async def test_text_input_with_instructions(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text="Hi there.", prompt_tokens=11, completion_tokens=3, cached_read_tokens=4),
    )

    def run() -> openai.types.responses.Response:
        return sdk(live_server, tenant_a).responses.create(
            model=spec.name,
            input="hello",
            instructions="Answer briefly.",
            temperature=0.3,
            max_output_tokens=50,
            metadata={"ticket": "T-1"},
        )

    response = await asyncio.to_thread(run)
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Hi there."
    assert response.model == spec.name
    assert response.instructions == "Answer briefly."
    assert response.metadata == {"ticket": "T-1"}
    message = response.output[0]
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.content[0].type == "output_text"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 3)
    assert response.usage.total_tokens == 14
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    [sent] = received(fake_upstream, spec)
    assert sent["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "hello"},
    ]
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 50 or sent.get("max_completion_tokens") == 50
    assert response._request_id is not None
    ledger = await usage_row(runtime, response._request_id)
    assert ledger.api == "responses"


async def test_items_input_with_roles_parts_and_an_image(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    image = f"data:image/png;base64,{PIXEL}"

    # The SDK's input types are a union of TypedDicts mypy cannot tell apart here.
    items: list[Any] = [
        {"role": "developer", "content": "Be exact."},
        {"role": "user", "content": "What is 2+2?"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "4", "annotations": []}],
        },
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "And this picture?"},
                {"type": "input_image", "image_url": image, "detail": "low"},
            ],
        },
    ]

    def run() -> openai.types.responses.Response:
        return sdk(live_server, tenant_a).responses.create(
            model=spec.name, input=items, store=False
        )

    response = await asyncio.to_thread(run)
    assert response.output_text == "Hello from the fake upstream."
    [sent] = received(fake_upstream, spec)
    messages = sent["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "Be exact."
    assert messages[2]["content"] == "4"
    parts = messages[3]["content"]
    assert {"type": "text", "text": "And this picture?"} in parts
    assert {"type": "image_url", "image_url": {"url": image, "detail": "low"}} in parts


async def test_function_tools_non_streaming(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(
            text="",
            tool_calls=[
                FakeToolCall("get_weather", '{"city": "Paris"}', id="call_p"),
                FakeToolCall("get_weather", '{"city": "Oslo"}', id="call_o"),
            ],
        ),
    )

    def run() -> openai.types.responses.Response:
        return sdk(live_server, tenant_a).responses.create(
            model=spec.name,
            input="Weather in Paris and Oslo?",
            tools=[WEATHER],
            tool_choice="required",
            parallel_tool_calls=True,
        )

    response = await asyncio.to_thread(run)
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_p", "get_weather", {"city": "Paris"}),
        ("call_o", "get_weather", {"city": "Oslo"}),
    ]
    assert all(c.id is not None and c.id.startswith("fc_") for c in calls)
    assert all(c.status == "completed" for c in calls)
    assert [item.type for item in response.output] == ["function_call", "function_call"]
    assert response.output_text == ""
    assert response.tool_choice == "required"
    assert response.tools[0].type == "function"
    assert response.tools[0].name == "get_weather"
    [sent] = received(fake_upstream, spec)
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["parameters"]
    assert sent["tool_choice"] == "required"
    assert sent["parallel_tool_calls"] is True


async def test_function_tools_streaming_events(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(
            text="Let me look.",
            tool_calls=[FakeToolCall("get_weather", '{"city": "Lima"}', id="call_l")],
        ),
    )

    def run() -> list[Any]:
        stream = sdk(live_server, tenant_a).responses.create(
            model=spec.name,
            input="Weather in Lima?",
            tools=[WEATHER],
            stream=True,
        )
        return list(stream)

    events = await asyncio.to_thread(run)
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed"
    first_call = kinds.index("response.function_call_arguments.delta")
    assert kinds[first_call - 4 : first_call] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
    ]
    assert kinds[-4:-1] == [
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Let me look."
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert json.loads(arguments) == {"city": "Lima"}
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert (done.name, done.output_index) == ("get_weather", 1)
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [a.item.type for a in added] == ["message", "function_call"]
    assert added[1].item.call_id == "call_l"
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == "Let me look."
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output[1].arguments == arguments
    assert final.usage is not None
    assert final.usage.total_tokens == 27
    # The stored response is the one the stream completed with.
    got = await asyncio.to_thread(retrieve, sdk(live_server, tenant_a), final.id)
    assert got.output_text == "Let me look."
    assert isinstance(got.output[1], ResponseFunctionToolCall)
    assert got.output[1].call_id == "call_l"


async def test_function_call_output_round_trip_stateless_and_stored(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    call = FakeToolCall("get_weather", '{"city": "Rome"}', id="call_r")
    fake_upstream.script(spec.upstream_model, Behaviour(text="", tool_calls=[call]))
    fake_upstream.script(spec.upstream_model, Behaviour(text="Sunny in Rome."))
    fake_upstream.script(spec.upstream_model, Behaviour(text="Still sunny."))
    client = sdk(live_server, tenant_a)

    def run() -> tuple[openai.types.responses.Response, ...]:
        first = client.responses.create(model=spec.name, input="Rome?", tools=[WEATHER])
        [made] = [i for i in first.output if isinstance(i, ResponseFunctionToolCall)]
        answer: Any = {"type": "function_call_output", "call_id": made.call_id, "output": "22C sun"}
        # Continued from the stored response: only the tool's output is sent.
        stored = client.responses.create(
            model=spec.name,
            previous_response_id=first.id,
            input=[answer],
            tools=[WEATHER],
        )
        # Stateless: the whole exchange is sent back as items.
        stateless = client.responses.create(
            model=spec.name,
            input=[{"role": "user", "content": "Rome?"}, cast(Any, made.model_dump()), answer],
            tools=[WEATHER],
            store=False,
        )
        return first, stored, stateless

    first, stored, stateless = await asyncio.to_thread(run)
    assert stored.output_text == "Sunny in Rome."
    assert stored.previous_response_id == first.id
    assert stateless.output_text == "Still sunny."
    _, with_previous, without = received(fake_upstream, spec)
    for sent in (with_previous, without):
        messages = sent["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
        assert messages[1]["tool_calls"][0]["id"] == "call_r"
        assert messages[1]["tool_calls"][0]["function"] == {
            "name": "get_weather",
            "arguments": '{"city": "Rome"}',
        }
        assert messages[2]["tool_call_id"] == "call_r"
        assert messages[2]["content"] == "22C sun"


class Capital(BaseModel):
    city: str
    population: int


async def test_text_format_json_schema_and_parse(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    answer = '{"city": "Paris", "population": 2100000}'
    fake_upstream.script(spec.upstream_model, Behaviour(text=answer))
    fake_upstream.script(spec.upstream_model, Behaviour(text=answer))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    client = sdk(live_server, tenant_a)

    def run() -> tuple[Any, Any]:
        raw = client.responses.create(
            model=spec.name,
            input="Capital of France?",
            text={
                "format": {
                    "type": "json_schema",
                    "name": "capital",
                    "schema": schema,
                    "strict": True,
                }
            },
        )
        parsed = client.responses.parse(
            model=spec.name, input="Capital of France?", text_format=Capital
        )
        return raw, parsed

    raw, parsed = await asyncio.to_thread(run)
    assert json.loads(raw.output_text)["city"] == "Paris"
    assert raw.text.format.type == "json_schema"
    assert parsed.output_parsed == Capital(city="Paris", population=2100000)
    first, second = received(fake_upstream, spec)
    assert first["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "capital", "schema": schema, "strict": True},
    }
    assert second["response_format"]["type"] == "json_schema"
    assert second["response_format"]["json_schema"]["name"] == "Capital"
    assert set(second["response_format"]["json_schema"]["schema"]["properties"]) == {
        "city",
        "population",
    }


async def test_previous_response_id_continues_a_stored_conversation(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "anthropic")
    fake_upstream.script(spec.upstream_model, Behaviour(text="Nice to meet you, Ada."))
    fake_upstream.script(spec.upstream_model, Behaviour(text="You are Ada."))
    fake_upstream.script(spec.upstream_model, Behaviour(text="Ada, still."))
    client = sdk(live_server, tenant_a)

    def run() -> tuple[Any, ...]:
        one = client.responses.create(
            model=spec.name, input="I am Ada.", instructions="Old instructions."
        )
        two = client.responses.create(
            model=spec.name, input="Who am I?", previous_response_id=one.id
        )
        three = client.responses.create(
            model=spec.name,
            input="Again?",
            previous_response_id=two.id,
            instructions="New instructions.",
            stream=True,
        )
        events = list(three)
        return one, two, events, client.responses.retrieve(two.id)

    one, two, events, retrieved = await asyncio.to_thread(run)
    assert two.output_text == "You are Ada."
    assert events[-1].response.output_text == "Ada, still."
    assert events[-1].response.previous_response_id == two.id
    assert retrieved.id == two.id
    assert retrieved.output_text == "You are Ada."
    assert retrieved.previous_response_id == one.id
    _, second, third = received(fake_upstream, spec)
    # Anthropic's wire format: the system prompt apart, turns as messages. Instructions are
    # not carried from one response to the next.
    assert "system" not in second
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert "Nice to meet you, Ada." in json.dumps(second["messages"][1])
    texts = json.dumps(third["messages"])
    for said in ("I am Ada.", "Nice to meet you, Ada.", "Who am I?", "You are Ada.", "Again?"):
        assert said in texts
    assert "New instructions." in json.dumps(third["system"])
    assert "Old instructions." not in json.dumps(third)


async def test_delete_and_store_false(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    client = sdk(live_server, tenant_a)
    before = await stored_count(runtime, tenant_a)

    def run() -> tuple[Any, Any]:
        kept = client.responses.create(model=spec.name, input="keep me")
        unstored = client.responses.create(model=spec.name, input="forget me", store=False)
        return kept, unstored

    kept, unstored = await asyncio.to_thread(run)
    assert unstored.store is False
    assert await stored_count(runtime, tenant_a) == before + 1
    with pytest.raises(openai.NotFoundError):
        await asyncio.to_thread(retrieve, client, unstored.id)
    with pytest.raises(openai.NotFoundError):
        await asyncio.to_thread(
            client.responses.create,
            model=spec.name,
            input="and then?",
            previous_response_id=unstored.id,
        )
    await asyncio.to_thread(client.responses.delete, kept.id)
    with pytest.raises(openai.NotFoundError):
        await asyncio.to_thread(retrieve, client, kept.id)
    with pytest.raises(openai.NotFoundError):
        await asyncio.to_thread(client.responses.delete, kept.id)
    assert await stored_count(runtime, tenant_a) == before


async def test_a_deleted_link_stops_the_chain(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    client = sdk(live_server, tenant_a)

    def run() -> str:
        one = client.responses.create(model=spec.name, input="one")
        two = client.responses.create(model=spec.name, input="two", previous_response_id=one.id)
        client.responses.delete(one.id)
        with pytest.raises(openai.NotFoundError) as refused:
            client.responses.create(model=spec.name, input="three", previous_response_id=two.id)
        return str(refused.value)

    assert "was deleted" in await asyncio.to_thread(run)


async def test_other_tenants_and_other_keys_responses_are_not_found(
    live_server: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(spec.upstream_model, Behaviour(text="B's secret is 7741."))

    def run() -> str:
        secret = sdk(live_server, tenant_b).responses.create(model=spec.name, input="remember")
        return secret.id

    victim = await asyncio.to_thread(run)
    before = await stored_count(runtime, tenant_b)
    calls = len(received(fake_upstream, spec))
    async with httpx.AsyncClient(base_url=f"{live_server}/v1") as http:
        # A's owner (a user token) and a second key of B's own tenant: neither owns it.
        other_key = await http.post(
            f"{live_server}/api/v1/keys",
            json={"name": "second", "scopes": ["chat"]},
            headers=tenant_b.owner,
        )
        assert other_key.status_code == 201, other_key.text
        for headers in (
            tenant_a.owner,
            tenant_a.api_key,
            {"Authorization": f"Bearer {other_key.json()['key']}"},
        ):
            continued = await http.post(
                "/responses",
                json={"model": spec.name, "input": "what was it?", "previous_response_id": victim},
                headers=headers,
            )
            assert continued.status_code == 404, continued.text
            assert continued.json()["error"]["code"] == "previous_response_not_found"
            assert (await http.get(f"/responses/{victim}", headers=headers)).status_code == 404
            assert (await http.delete(f"/responses/{victim}", headers=headers)).status_code == 404
            assert "7741" not in continued.text
        for forged in ("resp_x", "resp_" + "0" * 32, "../admin", "resp_" + "g" * 32):
            forged_get = await http.get(f"/responses/{forged}", headers=tenant_a.api_key)
            assert forged_get.status_code == 404, forged_get.text
    assert len(received(fake_upstream, spec)) == calls  # no upstream call was made
    assert await stored_count(runtime, tenant_b) == before
    kept = await asyncio.to_thread(retrieve, sdk(live_server, tenant_b), victim)
    assert kept.output_text == "B's secret is 7741."


async def test_incomplete_when_the_output_limit_is_hit(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(spec.upstream_model, Behaviour(text="Once upon", finish="length"))
    fake_upstream.script(spec.upstream_model, Behaviour(text="Once upon", finish="length"))
    client = sdk(live_server, tenant_a)

    def run() -> tuple[Any, list[Any]]:
        plain = client.responses.create(model=spec.name, input="story", max_output_tokens=2)
        events = list(
            client.responses.create(
                model=spec.name, input="story", max_output_tokens=2, stream=True
            )
        )
        return plain, events

    plain, events = await asyncio.to_thread(run)
    for response in (plain, events[-1].response):
        assert response.status == "incomplete"
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"
        assert response.output[0].status == "incomplete"
    assert events[-1].type == "response.incomplete"


async def test_failures_store_nothing_and_a_broken_stream_ends_with_an_error_event(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    # The upstream stalls after its first words, past the model's timeout: the answer has
    # started, so the failure can only be told inside the stream.
    spec = await add_model(runtime, fake_upstream, "openai", timeout_seconds=0.5)
    fake_upstream.script(spec.upstream_model, Behaviour(kind="400"))
    fake_upstream.script(
        spec.upstream_model, Behaviour(kind="slow", text="one two three four", delay=2)
    )
    client = sdk(live_server, tenant_a)
    before = await stored_count(runtime, tenant_a)

    def run() -> list[Any]:
        with pytest.raises(openai.APIStatusError):
            client.responses.create(model=spec.name, input="hi")
        return list(client.responses.create(model=spec.name, input="hi", stream=True))

    events = await asyncio.to_thread(run)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert "response.output_text.delta" in kinds
    assert kinds[-1] == "error"
    assert events[-1].code == "upstream_error"
    assert "response.completed" not in kinds
    assert await stored_count(runtime, tenant_a) == before


async def post(live_server: str, tenant: TenantFixture, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(f"{live_server}/v1/responses", json=body, headers=tenant.api_key)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"tools": [{"type": "web_search"}]}, "web_search"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "file_search"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"include": ["file_search_call.results"]}, "include"),
        ({"truncation": "disabled"}, "truncation"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        # Keys of a function tool, a tool choice or a text format that mtai would otherwise
        # ignore (and echo back unchecked): refused by name.
        ({"tools": [{**WEATHER, "defer_loading": True}]}, "tools[0].defer_loading"),
        ({"tools": [{**WEATHER, "output_schema": {"type": "string"}}]}, "tools[0].output_schema"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "f", "x": 1}},
            "tool_choice.x",
        ),
        ({"text": {"format": {"type": "json_object", "x": [[1]]}}}, "text.format.x"),
        (
            {"text": {"format": {"type": "json_schema", "name": "s", "schema": {}, "y": 1}}},
            "text.format.y",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "reasoning"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input_file",
        ),
    ],
)
async def test_what_mtai_cannot_honour_is_refused_by_name(
    live_server: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    extra: dict[str, Any],
    named: str,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    refused = await post(live_server, tenant_a, {"model": spec.name, "input": "hi", **extra})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "unsupported_parameter"
    assert named in error["message"]
    assert received(fake_upstream, spec) == []


async def test_drop_params_drops_tuning_settings_and_says_so(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    dropped = await post(
        live_server,
        tenant_a,
        {
            "model": spec.name,
            "input": "hi",
            "reasoning": {"effort": "low"},
            "text": {"verbosity": "low"},
            "include": ["file_search_call.results", "web_search_call.results"],
            "drop_params": True,
        },
    )
    assert dropped.status_code == 200, dropped.text
    assert dropped.headers["X-Mtai-Dropped-Params"] == "reasoning, text.verbosity, include"
    # The gateway's drops (what the model's provider cannot do) and this API's share a header.
    anthropic = await add_model(runtime, fake_upstream, "anthropic")
    both = await post(
        live_server,
        tenant_a,
        {
            "model": anthropic.name,
            "input": "hi",
            "top_logprobs": 2,
            "reasoning": {"effort": "low"},
            "drop_params": True,
        },
    )
    assert both.status_code == 200, both.text
    assert both.headers["X-Mtai-Dropped-Params"] == "logprobs, reasoning"
    assert "logprobs" not in json.dumps(received(fake_upstream, anthropic))
    assert "logprobs" not in both.json()["output"][0]["content"][0]
    # Not droppable: a hosted tool changes what the answer is.
    refused = await post(
        live_server,
        tenant_a,
        {"model": spec.name, "input": "hi", "tools": [{"type": "web_search"}], "drop_params": True},
    )
    assert refused.status_code == 400


def image(url: str) -> dict[str, Any]:
    return {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": url}]}]}


def deep(levels: int) -> Any:
    value: Any = {}
    for _ in range(levels):
        value = [value]
    return value


def call(**fields: str) -> dict[str, Any]:
    return {"input": [{"type": "function_call", "call_id": "c", "name": "f", **fields}]}


@pytest.mark.parametrize(
    "body",
    [
        {"input": []},
        {"input": [{"role": "tool", "content": "x"}]},
        {"input": [{"role": ["user"], "content": "x"}]},
        {"input": [{"type": {"a": 1}}]},
        {"input": [{"role": "user", "content": [["input_text"]]}]},
        {"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "x"}]}]},
        {"tools": [{"type": "function", "name": "f", "parameters": "not a schema"}]},
        {"text": {"format": {"type": "json_schema", "name": "s"}}},
        {"tool_choice": ["auto"]},
        image("http://10.0.0.1/a.png"),
        image("data:image/png;base64,@@@"),
        image("data:image/png;base64,iVBOR\u00e9w0K"),
        image("data:text/html;base64,PGI+"),
        call(arguments="[1"),
        call(arguments="{}", name="bad name!"),
        {"input": [{"type": "function_call_output", "call_id": "nobody-called", "output": "x"}]},
        {"tools": [{"type": "function", "name": "f", "parameters": {"a": deep(40)}}]},
        {"text": {"format": {"type": "json_schema", "name": "s", "schema": {"a": deep(40)}}}},
        {"tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "f"}]},
        {"tool_choice": {"type": "function", "name": "missing"}},
        {"tool_choice": "required"},
        {"metadata": {f"k{i}": "v" for i in range(17)}},
        {"metadata": {"k": "v" * 513}},
        {"previous_response_id": "resp_" + "a" * 500},
        {"input": "x" * 200_000},
        {"input": [{"role": "user", "content": "hi"}] * 1001},
    ],
)
async def test_bad_input_is_a_4xx(
    live_server: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    body: dict[str, Any],
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    answer = await post(live_server, tenant_a, {"model": spec.name, "input": "hi", **body})
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"]["message"]
    assert received(fake_upstream, spec) == []


async def test_logprobs_when_included(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    client = sdk(live_server, tenant_a)

    def run() -> tuple[Any, list[Any]]:
        include: Any = ["message.output_text.logprobs"]
        plain = client.responses.create(
            model=spec.name, input="hi", include=include, top_logprobs=2
        )
        stream = client.responses.create(
            model=spec.name, input="hi", include=include, top_logprobs=2, stream=True
        )
        return plain, list(stream)

    plain, events = await asyncio.to_thread(run)
    tokens = plain.output[0].content[0].logprobs
    assert "".join(t.token for t in tokens) == "Hello from the fake upstream."
    assert all(len(t.top_logprobs) == 2 for t in tokens)
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(t.token for d in deltas for t in d.logprobs) == "Hello from the fake upstream."
    final = events[-1].response.output[0].content[0].logprobs
    assert [t.token for t in final] == [t.token for t in tokens]
    for sent in received(fake_upstream, spec):
        assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)


async def test_too_many_images_are_refused(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    picture = {"type": "input_image", "image_url": f"data:image/png;base64,{PIXEL}"}
    many = [{"role": "user", "content": [picture] * (runtime.settings.max_images_per_request + 1)}]
    refused = await post(live_server, tenant_a, {"model": spec.name, "input": many})
    assert refused.status_code == 400
    assert "Too many images" in refused.json()["error"]["message"]
    assert received(fake_upstream, spec) == []


async def test_the_sdk_stream_helper_assembles_the_response(
    live_server: str, runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    """`responses.stream` rebuilds the response from the events alone: their items, indexes
    and parts must line up for its final response to equal what mtai stored."""
    spec = await add_model(runtime, fake_upstream, "openai")
    answer = '{"city": "Paris", "population": 2100000}'
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text=answer, tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}')]),
    )
    client = sdk(live_server, tenant_a)

    def run() -> tuple[Any, Any]:
        with client.responses.stream(
            model=spec.name, input="Paris?", tools=[WEATHER], text_format=Capital
        ) as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            assert "".join(deltas) == answer
            final = stream.get_final_response()
        return final, retrieve(client, final.id)

    final, stored = await asyncio.to_thread(run)
    assert final.output_parsed == Capital(city="Paris", population=2100000)
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output[1].arguments == '{"city": "Paris"}'
    assert stored.output_text == answer


@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock"])
async def test_tools_round_trip_through_every_provider(
    live_server: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    provider: str,
) -> None:
    """A tool call streamed and not, then its output sent back by previous_response_id, with
    each upstream protocol's own tool shapes underneath."""
    spec = await add_model(runtime, fake_upstream, provider)
    call = FakeToolCall("get_weather", '{"city": "Kyiv"}', id="call_k")
    fake_upstream.script(spec.upstream_model, Behaviour(text="", tool_calls=[call]))
    fake_upstream.script(spec.upstream_model, Behaviour(text="Checking.", tool_calls=[call]))
    fake_upstream.script(spec.upstream_model, Behaviour(text="Snow in Kyiv."))
    client = sdk(live_server, tenant_a)

    def run() -> tuple[Any, list[Any], Any]:
        plain = client.responses.create(model=spec.name, input="Kyiv?", tools=[WEATHER])
        events: list[Any] = list(
            client.responses.create(model=spec.name, input="Kyiv?", tools=[WEATHER], stream=True)
        )
        answer: Any = {"type": "function_call_output", "call_id": "call_k", "output": "-3C snow"}
        final = client.responses.create(
            model=spec.name,
            input=[answer],
            tools=[WEATHER],
            previous_response_id=events[-1].response.id,
        )
        return plain, events, final

    plain, events, final = await asyncio.to_thread(run)
    [made] = [i for i in plain.output if isinstance(i, ResponseFunctionToolCall)]
    assert (made.call_id, made.name, json.loads(made.arguments)) == (
        "call_k",
        "get_weather",
        {"city": "Kyiv"},
    )
    streamed = events[-1].response
    assert streamed.output_text == "Checking."
    assert [item.type for item in streamed.output] == ["message", "function_call"]
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert json.loads(arguments) == {"city": "Kyiv"}
    assert final.output_text == "Snow in Kyiv."
    last = json.dumps(received(fake_upstream, spec)[-1])
    for sent in ("Kyiv?", "Checking.", "call_k", "get_weather", "-3C snow"):
        assert sent in last


_TABLE = text(
    "SELECT c.relrowsecurity, c.relforcerowsecurity, "
    "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid), "
    "has_table_privilege('mtai_app', 'stored_responses', 'SELECT'), "
    "has_table_privilege('mtai_app', 'stored_responses', 'INSERT'), "
    "has_table_privilege('mtai_app', 'stored_responses', 'DELETE'), "
    "has_table_privilege('mtai_app', 'stored_responses', 'UPDATE') "
    "FROM pg_class c WHERE c.relname = 'stored_responses'"
)


async def _stored_responses_table(url: str) -> tuple[Any, ...] | None:
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(_TABLE)).one_or_none()
    finally:
        await engine.dispose()
    return tuple(row) if row is not None else None


async def test_migration_0013_upgrades_downgrades_and_upgrades_again(pg_admin_url: str) -> None:
    # Row-level security forced with one tenant policy; the app role reads, adds and deletes
    # stored turns but never rewrites one.
    expected = (True, True, 1, True, True, True, False)
    with fresh_database(pg_admin_url) as url:
        config = alembic_config(url, "mtai_app")
        await asyncio.to_thread(command.upgrade, config, "0013")
        assert await _stored_responses_table(url) == expected
        await asyncio.to_thread(command.downgrade, config, "0012")
        assert await _stored_responses_table(url) is None
        await asyncio.to_thread(command.upgrade, config, "0013")
        assert await _stored_responses_table(url) == expected
