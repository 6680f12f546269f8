"""The one chat-turn pipeline every ingress runs through: what a request uses is checked against
its model and fallbacks before any upstream call, settings are dropped only when asked, tool
definitions count towards limits, and the ledger and prompt logs keep tool calls."""

from __future__ import annotations

import base64
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mtai.db.models import PromptLog
from mtai.errors import InvalidInput
from mtai.providers.llm.conversation import (
    Generation,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolResult,
    ToolSpec,
)
from mtai.runtime import Runtime
from mtai.services.gateway import (
    DROPPED_HEADER,
    ChatInput,
    Gateway,
    RagOptions,
    UnsupportedParameter,
    cache_key,
)
from mtai.services.limits import RateLimited
from mtai.services.llm_router import UpstreamFailed
from mtai.services.principal import ALL_SCOPES, Principal, Role
from tests.conftest import TenantFixture, add_model
from tests.integration.test_gateway import usage_row
from tests.support.fake_upstreams import Behaviour, FakeToolCall, FakeUpstream

WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def owner(tenant: TenantFixture, **limits: Any) -> Principal:
    return Principal(
        tenant_id=tenant.id,
        api_key_id=tenant.key_id,
        role=Role.OWNER,
        scopes=ALL_SCOPES,
        key_limits=limits or None,
    )


def ask(text: str = "What is the weather in Paris?") -> list[Message]:
    return [Message("user", text)]


def tool_exchange() -> list[Message]:
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    return [
        Message("user", "What is the weather in Paris?"),
        Message("assistant", [call]),
        Message("tool", [ToolResult("call_1", (TextPart("18 C and sunny"),))]),
    ]


async def test_a_refused_feature_is_a_400_naming_it_and_the_model_before_any_call(
    runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    before = fake_upstream.count(spec.upstream_model)
    with pytest.raises(UnsupportedParameter) as refused:
        await runtime.gateway.prepare(
            owner(tenant_a),
            ChatInput(ask(), model=spec.name, generation=Generation(top_k=5)),
            api="openai",
        )
    assert refused.value.param == "top_k"
    assert spec.name in refused.value.detail
    assert "drop_params" in refused.value.detail
    with pytest.raises(UnsupportedParameter) as tools:
        await runtime.gateway.prepare(
            owner(tenant_a),
            ChatInput(ask(), model="extractive", generation=Generation(tools=(WEATHER,))),
            api="openai",
        )
    assert tools.value.param == "tools"
    assert "extractive" in tools.value.detail
    assert fake_upstream.count(spec.upstream_model) == before


async def test_drop_params_drops_only_tuning_settings_and_says_which(
    runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    prepared = await runtime.gateway.prepare(
        owner(tenant_a),
        ChatInput(ask(), model=spec.name, generation=Generation(top_k=5, seed=7), drop_params=True),
        api="openai",
    )
    assert prepared.dropped == ("top_k",)
    assert Gateway.dropped_header(prepared) == {DROPPED_HEADER: "top_k"}
    await runtime.gateway.complete(prepared)
    sent = [r for r in fake_upstream.requests if r.model == spec.upstream_model][-1].json
    assert "top_k" not in sent
    assert sent["seed"] == 7
    # What changes the answer itself is never dropped: the extractive answerer has no tools.
    with pytest.raises(UnsupportedParameter):
        await runtime.gateway.prepare(
            owner(tenant_a),
            ChatInput(
                ask(), model="extractive", generation=Generation(tools=(WEATHER,)), drop_params=True
            ),
            api="openai",
        )


async def test_a_model_whose_catalog_entry_drops_params(
    runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai", drop_params=True)
    prepared = await runtime.gateway.prepare(
        owner(tenant_a),
        ChatInput(ask(), model=spec.name, generation=Generation(top_k=5)),
        api="openai",
    )
    assert prepared.dropped == ("top_k",)
    await runtime.gateway.complete(prepared)


async def test_catalog_flags_refuse_what_the_model_cannot_do(
    runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai", capabilities={"tools": False})
    with pytest.raises(UnsupportedParameter) as refused:
        await runtime.gateway.prepare(
            owner(tenant_a),
            ChatInput(ask(), model=spec.name, generation=Generation(tools=(WEATHER,))),
            api="openai",
        )
    assert refused.value.param == "tools"


async def test_fallbacks_only_to_models_that_support_what_the_request_uses(
    runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(
        runtime, fake_upstream, "openai", fallbacks=["extractive"], max_retries=0
    )
    fake_upstream.script(spec.upstream_model, Behaviour(kind="500"), Behaviour(kind="500"))
    with_tools = await runtime.gateway.prepare(
        owner(tenant_a),
        ChatInput(ask(), model=spec.name, generation=Generation(tools=(WEATHER,))),
        api="openai",
    )
    assert [t.spec.name for t in with_tools.targets] == [spec.name]
    with pytest.raises(UpstreamFailed):
        await runtime.gateway.complete(with_tools)
    plain = await runtime.gateway.prepare(
        owner(tenant_a), ChatInput(ask(), model=spec.name), api="openai"
    )
    assert [t.spec.name for t in plain.targets] == [spec.name, "extractive"]
    outcome = await runtime.gateway.complete(plain)
    assert outcome.model.name == "extractive"


@pytest.mark.parametrize(
    ("messages", "wording"),
    [
        (
            [Message("user", "hi"), Message("tool", [ToolResult("nope", (TextPart("x"),))])],
            "did not make",
        ),
        ([Message("user", "hi"), Message("assistant", "hello")], "assistant"),
        (
            [
                Message("user", "hi"),
                Message("assistant", [ToolCall("a", "f", "{}"), ToolCall("b", "f", "{}")]),
                Message("tool", [ToolResult("a", (TextPart("x"),))]),
            ],
            "have no result",
        ),
        (
            [
                Message("user", "hi"),
                Message("assistant", [ToolCall("a", "f", "{}")]),
                Message("user", "never mind"),
            ],
            "no result",
        ),
        (
            [
                Message("user", "hi"),
                Message("assistant", [ToolCall("a", "f", "{}")]),
                Message("tool", [ToolResult("a", (TextPart("x"),))]),
                Message("tool", [ToolResult("a", (TextPart("again"),))]),
            ],
            "another result",
        ),
        ([Message("user", "   ")], "empty"),
    ],
)
async def test_conversations_that_no_upstream_accepts_are_refused(
    runtime: Runtime, tenant_a: TenantFixture, messages: list[Message], wording: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await runtime.gateway.prepare(
            owner(tenant_a), ChatInput(messages, model="extractive"), api="openai"
        )
    assert wording in refused.value.detail


async def test_tool_definitions_count_towards_the_token_limit(
    runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    principal = owner(tenant_a, tpm=1_500)
    small = await runtime.gateway.prepare(
        principal, ChatInput(ask(), model=spec.name, max_tokens=10), api="openai"
    )
    await runtime.gateway.release(small, None)
    big = ToolSpec(name="lookup", description="word " * 2_000)
    with pytest.raises(RateLimited):
        await runtime.gateway.prepare(
            principal,
            ChatInput(ask(), model=spec.name, max_tokens=10, generation=Generation(tools=(big,))),
            api="openai",
        )


def test_the_cache_key_covers_every_setting_that_shapes_the_answer() -> None:
    tenant = uuid.uuid4()
    base = Generation()
    variants = [
        base,
        Generation(tools=(WEATHER,)),
        Generation(tools=(WEATHER,), tool_choice=ToolChoice("required")),
        Generation(response_format=ResponseFormat("json_object")),
        Generation(response_format=ResponseFormat("json_schema", schema={"type": "object"})),
        Generation(seed=1),
        Generation(stop=("\n",)),
        Generation(top_p=0.5),
        Generation(logit_bias={"50256": -100}),
        Generation(user="someone"),
    ]
    keys = {cache_key(tenant, "tenant", "m", ask(), None, g) for g in variants}
    assert len(keys) == len(variants)
    as_text = cache_key(tenant, "tenant", "m", [Message("user", "x")], None, base)
    as_result = cache_key(
        tenant, "tenant", "m", [Message("tool", [ToolResult("x", (TextPart("x"),))])], None, base
    )
    assert as_text != as_result


async def test_tool_calls_usage_details_and_end_user_reach_the_ledger_and_prompt_log(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    platform_admin: Any,
) -> None:
    await client.patch(
        f"/api/v1/tenants/{tenant_a.id}",
        json={"settings": {"log_prompts": True, "prompt_log_retention_days": 7}},
        headers=platform_admin.headers,
    )
    spec = await add_model(
        runtime, fake_upstream, "openai", cached_input_price_per_1m=Decimal("0.3")
    )
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(
            text="",
            tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}', id="call_9")],
            prompt_tokens=100,
            completion_tokens=20,
            cached_read_tokens=60,
            reasoning_tokens=5,
        ),
    )
    prepared = await runtime.gateway.prepare(
        owner(tenant_a),
        ChatInput(ask(), model=spec.name, generation=Generation(tools=(WEATHER,), user="u-42")),
        api="openai",
    )
    outcome = await runtime.gateway.complete(prepared)
    assert outcome.finish_reason == "tool_calls"
    assert outcome.tool_calls == (ToolCall("call_9", "get_weather", '{"city": "Paris"}'),)
    row = await usage_row(runtime, outcome.request_id)
    assert (row.tool_calls, row.cached_read_tokens, row.reasoning_tokens) == (1, 60, 5)
    assert row.end_user == "u-42"
    expected = (40 * Decimal(3) + 60 * Decimal("0.3") + 20 * Decimal(15)) / Decimal(1_000_000)
    assert row.cost_usd == expected == outcome.cost_usd
    async with runtime.db.platform() as session:
        entry = (
            await session.execute(
                select(PromptLog).where(PromptLog.request_id == outcome.request_id)
            )
        ).scalar_one()
    assert entry.tool_calls == [
        {"id": "call_9", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]


async def test_streamed_tool_calls_come_in_pieces_and_are_recorded_whole(
    runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    arguments = json.dumps({"city": "Paris", "unit": "celsius", "days": 3})
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(text="", tool_calls=[FakeToolCall("get_weather", arguments, id="call_s")]),
    )
    prepared = await runtime.gateway.prepare(
        owner(tenant_a),
        ChatInput(ask(), model=spec.name, generation=Generation(tools=(WEATHER,))),
        api="openai",
    )
    session = await runtime.gateway.open_stream(prepared)
    pieces = [e async for e in session.events() if isinstance(e, ToolCallDelta)]
    assert len(pieces) > 2
    assert (pieces[0].id, pieces[0].name) == ("call_s", "get_weather")
    assert "".join(p.arguments for p in pieces) == arguments
    assert session.outcome is not None
    assert session.outcome.tool_calls == (ToolCall("call_s", "get_weather", arguments),)
    assert session.outcome.finish_reason == "tool_calls"
    row = await usage_row(runtime, session.outcome.request_id)
    assert row.tool_calls == 1


async def test_grounding_goes_before_the_question_not_between_a_call_and_its_result(
    runtime: Runtime, fake_upstream: FakeUpstream, tenant_a: TenantFixture
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai")
    prepared = await runtime.gateway.prepare(
        owner(tenant_a),
        ChatInput(
            tool_exchange(),
            model=spec.name,
            generation=Generation(tools=(WEATHER,)),
            rag=RagOptions(collection_ids=None, top_k=3),
        ),
        api="openai",
    )
    await runtime.gateway.complete(prepared)
    sent = [r for r in fake_upstream.requests if r.model == spec.upstream_model][-1].json
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
    assert sent["tools"][0]["function"]["name"] == "get_weather"


async def test_an_image_larger_than_the_json_body_limit_reaches_the_model(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    """Chat bodies carry images inline: a 2 MB image passes where other JSON bodies stop at
    MTAI_MAX_REQUEST_BYTES, and a body over MTAI_MAX_CHAT_REQUEST_BYTES is a 413."""
    spec = await add_model(runtime, fake_upstream, "openai")
    png = b"\x89PNG\r\n\x1a\n" + bytes(2 * 1024 * 1024)
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    assert len(url) > runtime.settings.max_request_bytes

    def body(image_url: str) -> dict[str, Any]:
        content = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": image_url}},
        ]
        return {"model": spec.name, "messages": [{"role": "user", "content": content}]}

    headers = {"Authorization": f"Bearer {tenant_a.key}"}
    answered = await client.post("/v1/chat/completions", json=body(url), headers=headers)
    assert answered.status_code == 200, answered.text
    sent = [r for r in fake_upstream.requests if r.model == spec.upstream_model][-1].json
    assert sent["messages"][0]["content"][1]["image_url"]["url"] == url
    huge = "data:image/png;base64," + "A" * runtime.settings.max_chat_request_bytes
    refused = await client.post("/v1/chat/completions", json=body(huge), headers=headers)
    assert refused.status_code == 413


async def test_v1_models_lists_what_each_model_can_take(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    able = await add_model(runtime, fake_upstream, "anthropic")
    blind = await add_model(runtime, fake_upstream, "openai", capabilities={"vision": False})
    listed = await client.get("/v1/models", headers={"Authorization": f"Bearer {tenant_a.key}"})
    by_id = {m["id"]: m for m in listed.json()["data"]}
    assert by_id[able.name]["capabilities"] == {"tools": True, "vision": True, "json_schema": True}
    assert by_id[blind.name]["capabilities"]["vision"] is False
    assert by_id["extractive"]["capabilities"] == {
        "tools": False,
        "vision": False,
        "json_schema": False,
    }
