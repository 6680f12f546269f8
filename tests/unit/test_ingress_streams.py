"""What the three streaming ingress APIs share, checked without a server: the one relay of a
gateway stream into event lines (api/streaming.relay), the one dropped-params header, and the
Responses API's event stream when the pieces of parallel tool calls come interleaved."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Any

from mtai.api.openai_chat import dropped_header
from mtai.api.openai_responses import EventStream, ResponseHead
from mtai.api.streaming import relay
from mtai.errors import AppError
from mtai.providers.llm.conversation import Delta, ToolCallDelta, Usage
from mtai.services.gateway import DROPPED_HEADER, Outcome
from tests.integration.test_catalog_ledger_parity import spec


def outcome(finish_reason: str = "stop") -> Outcome:
    return Outcome(
        text="",
        model=spec(),
        usage=Usage(prompt_tokens=3, completion_tokens=2),
        cost_usd=Decimal(0),
        latency_ms=1,
        ttft_ms=1,
        finish_reason=finish_reason,
        request_id="r1",
    )


class Answer:
    """A stream session as relay sees it: pieces, then an outcome, or an error part-way."""

    def __init__(self, pieces: list[Delta | ToolCallDelta], error: AppError | None = None) -> None:
        self.pieces = pieces
        self.error = error
        self.outcome: Outcome | None = None
        self.closed = False

    async def events(self) -> AsyncGenerator[Delta | ToolCallDelta, None]:
        try:
            for piece in self.pieces:
                yield piece
            if self.error is not None:
                raise self.error
            self.outcome = outcome()
        finally:
            self.closed = True


async def test_relay_sends_opening_pieces_and_an_awaited_closing_in_order() -> None:
    answer = Answer([Delta("a"), Delta("b")])
    stored: list[str] = []

    async def closing(done: Outcome) -> list[str]:
        stored.append(done.finish_reason)  # e.g. the Responses API storing the answer
        return [f"end after {stored}"]

    lines = [
        line
        async for line in relay(
            answer,
            opening=["start"],
            on_event=lambda e: [e.text] if isinstance(e, Delta) else [],
            on_error=lambda exc: [f"error {exc.code}"],
            closing=closing,
        )
    ]
    assert lines == ["start", "a", "b", "end after ['stop']"]
    assert answer.closed

    synchronous = relay(
        Answer([]),
        opening=[],
        on_event=lambda e: [],
        on_error=lambda exc: [],
        closing=lambda done: [done.finish_reason],
    )
    assert [line async for line in synchronous] == ["stop"]


async def test_relay_ends_with_the_error_event_and_closes_the_answer() -> None:
    answer = Answer([Delta("a")], AppError("upstream broke", code="upstream_error"))
    lines = [
        line
        async for line in relay(
            answer,
            opening=["start"],
            on_event=lambda e: ["piece"],
            on_error=lambda exc: [f"error {exc.code}"],
            closing=lambda done: ["never"],
        )
    ]
    assert lines == ["start", "piece", "error upstream_error"]
    assert answer.closed

    left = Answer([Delta("a"), Delta("b")])
    stream = relay(
        left,
        opening=[],
        on_event=lambda e: ["piece"],
        on_error=lambda exc: [],
        closing=lambda done: [],
    )
    assert await anext(stream) == "piece"
    await stream.aclose()  # the client went away
    assert left.closed


def test_the_dropped_params_header_names_each_setting_once() -> None:
    merged = dropped_header({DROPPED_HEADER: "top_k, logprobs"}, ["thinking", "top_k"])
    assert merged == {DROPPED_HEADER: "top_k, logprobs, thinking"}
    assert dropped_header({}, ["thinking"]) == {DROPPED_HEADER: "thinking"}
    assert dropped_header({}, []) == {}


def events_of(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line.split("data: ", 1)[1]) for line in lines]


def test_interleaved_tool_call_pieces_reach_their_own_items() -> None:
    stream = EventStream(ResponseHead("resp_1", 0, "m", {}), logprobs=False)
    lines = list(stream.start())
    for piece in (
        Delta("Checking."),
        ToolCallDelta(0, "call_a", "weather", '{"city":'),
        ToolCallDelta(1, "call_b", "time", '{"zone":'),
        ToolCallDelta(0, arguments=' "Lima"}'),
        ToolCallDelta(1, arguments=' "UTC"}'),
    ):
        lines += stream.on(piece)
    body, closing = stream.finish(outcome("tool_calls"))
    events = events_of(lines + closing)

    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for index, arguments in ((1, '{"city": "Lima"}'), (2, '{"zone": "UTC"}')):
        mine = [e for e in events if e.get("output_index") == index]
        kinds = [e["type"] for e in mine]
        # Each item's own events in order: added, its deltas, done, and nothing after done.
        assert kinds[0] == "response.output_item.added"
        assert kinds[-2:] == [
            "response.function_call_arguments.done",
            "response.output_item.done",
        ]
        deltas = [e["delta"] for e in mine if e["type"].endswith("arguments.delta")]
        assert "".join(deltas) == arguments
        assert mine[-2]["arguments"] == arguments
        assert mine[-1]["item"]["arguments"] == arguments
        assert mine[-1]["item"]["status"] == "completed"
        assert body["output"][index]["arguments"] == arguments
    done = [e["output_index"] for e in events if e["type"] == "response.output_item.done"]
    assert done == [0, 1, 2]  # items close in output order
    assert events[-1]["type"] == "response.completed"


def test_only_the_last_open_item_of_a_cut_answer_is_incomplete() -> None:
    stream = EventStream(ResponseHead("resp_2", 0, "m", {}), logprobs=False)
    list(stream.start())
    list(stream.on(ToolCallDelta(0, "call_a", "f", "{}")))
    list(stream.on(ToolCallDelta(1, "call_b", "g", '{"x": ')))
    body, _ = stream.finish(outcome("length"))
    assert [item["status"] for item in body["output"]] == ["completed", "incomplete"]
    assert body["status"] == "incomplete"
