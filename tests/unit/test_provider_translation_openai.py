"""Translation details of the OpenAI-compatible, local and extractive adapters that need no
server: how upstream stream keys map to canonical tool-call indexes, usage details a server
leaves null, the support tables, and the extractive answer's stop sequences."""

from __future__ import annotations

from mtai.providers.llm.base import CompletionRequest, Delta, Source, StreamEnd, ToolCallDelta
from mtai.providers.llm.capabilities import FEATURES, Support
from mtai.providers.llm.conversation import Generation, Message, TextPart, ToolCall
from mtai.providers.llm.extractive import SUPPORT as EXTRACTIVE
from mtai.providers.llm.extractive import ExtractiveProvider
from mtai.providers.llm.local_llama import SUPPORT as LOCAL
from mtai.providers.llm.openai_compat import SUPPORT as OPENAI
from mtai.providers.llm.openai_compat import _ToolCallIndexes, _usage, request_body


def test_upstream_indexes_become_zero_based_in_order_of_appearance() -> None:
    calls = _ToolCallIndexes()
    pieces = [
        calls.piece({"index": 3, "id": "a", "function": {"name": "f", "arguments": ""}}),
        calls.piece({"index": 7, "id": "b", "function": {"name": "g", "arguments": "{"}}),
        calls.piece({"index": 3, "function": {"arguments": '{"x":1}'}}),
        calls.piece({"index": 7, "function": {"arguments": "}"}}),
    ]
    assert pieces == [
        ToolCallDelta(0, "a", "f", ""),
        ToolCallDelta(1, "b", "g", "{"),
        ToolCallDelta(0, arguments='{"x":1}'),
        ToolCallDelta(1, arguments="}"),
    ]


def test_servers_without_indexes_or_ids_still_give_whole_calls() -> None:
    calls = _ToolCallIndexes()
    first = calls.piece({"id": "a", "function": {"name": "f", "arguments": '{"a":'}})
    more = calls.piece({"function": {"arguments": "1}"}})
    # A server that sends the arguments as an object and no id: an id is made up.
    second = calls.piece({"index": 0, "function": {"name": "g", "arguments": {"b": 2}}})
    assert (first.index, first.id, more.index, more.arguments) == (0, "a", 0, "1}")
    assert (second.index, second.name, second.arguments) == (1, "g", '{"b": 2}')
    assert second.id is not None
    assert second.id.startswith("call_")


def test_usage_details_may_be_absent_or_null() -> None:
    assert _usage(None) is None
    usage = _usage(
        {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "prompt_tokens_details": None,
            "completion_tokens_details": {"reasoning_tokens": None},
        }
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_read_tokens, usage.reasoning_tokens) == (10, 0, 0)


def test_top_logprobs_alone_turns_logprobs_on_and_assistant_text_alone_is_a_string() -> None:
    request = CompletionRequest(
        "m",
        [Message("user", [TextPart("a"), TextPart("b")]), Message("assistant", "")],
        5,
        Generation(top_logprobs=2),
    )
    body = request_body(request, True)
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    assert body["messages"] == [
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": ""},
    ]
    assert body["stream_options"] == {"include_usage": True}


def test_assistant_tool_call_without_text_has_null_content() -> None:
    body = request_body(
        CompletionRequest("m", [Message("assistant", [ToolCall("c", "f", "{}")])], 5), False
    )
    assert body["messages"][0]["content"] is None
    assert "stream_options" not in body


def test_support_tables() -> None:
    assert {f for f in FEATURES if OPENAI[f] is Support.REFUSED} == {"top_k"}
    assert {f for f in FEATURES if LOCAL[f] is not Support.REFUSED} == {
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "response_format.json_object",
        "response_format.json_schema",
    }
    assert {f for f in FEATURES if EXTRACTIVE[f] is not Support.REFUSED} == {
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "stop",
    }


SOURCES = [Source(1, "Guide", "Install it. Then STOP here and rest."), Source(2, "More", "x")]


async def test_extractive_answer_stops_at_the_first_stop_sequence() -> None:
    provider = ExtractiveProvider()
    whole = await provider.complete(
        CompletionRequest("x", [Message("user", "q")], 50, sources=SOURCES)
    )
    assert "STOP here" in whole.text
    assert "[2] More" in whole.text
    generation = Generation(stop=("[2]", "STOP"))
    request = CompletionRequest("x", [Message("user", "q")], 50, generation, SOURCES)
    cut = await provider.complete(request)
    assert cut.text == whole.text[: whole.text.index("STOP")]
    assert cut.finish_reason == "stop"
    events = [e async for e in provider.stream(request)]
    assert "".join(e.text for e in events if isinstance(e, Delta)) == cut.text
    assert events[-1] == StreamEnd(None)
