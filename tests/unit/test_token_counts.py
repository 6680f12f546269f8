"""Token counts for the canonical conversation: every part counts, and trimming keeps a tool
call and its results together (an upstream refuses one without the other)."""

from __future__ import annotations

from mtai.providers.llm.conversation import (
    Generation,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from mtai.services import tokenizer


def test_tool_calls_results_and_images_count() -> None:
    plain = tokenizer.count_message(Message("user", "hello"))
    with_image = Message("user", [TextPart("hello"), ImagePart("https://example.com/a.png")])
    assert tokenizer.count_message(with_image) == plain + tokenizer.IMAGE_TOKENS
    call = Message("assistant", [ToolCall("c1", "lookup", '{"q": "' + "word " * 50 + '"}')])
    assert tokenizer.count_message(call) > 50
    result = Message("tool", [ToolResult("c1", (TextPart("answer " * 40),))])
    assert tokenizer.count_message(result) > 40


def test_tool_definitions_and_schemas_count() -> None:
    assert tokenizer.count_settings(Generation()) == 0
    tools = Generation(tools=(ToolSpec("lookup", "word " * 100),))
    assert tokenizer.count_settings(tools) > 100
    schema = {"type": "object", "properties": {f"field{i}": {"type": "string"} for i in range(30)}}
    structured = Generation(response_format=ResponseFormat("json_schema", schema=schema))
    assert tokenizer.count_settings(structured) > 30


def test_trimming_keeps_a_tool_call_with_its_results() -> None:
    filler = "lorem ipsum " * 200
    history = [
        Message("system", "Be brief."),
        Message("user", filler),
        Message("assistant", [ToolCall("c1", "lookup", "{}")]),
        Message("tool", [ToolResult("c1", (TextPart(filler),))]),
        Message("assistant", "Here it is."),
        Message("user", "And now?"),
        Message("assistant", [ToolCall("c2", "lookup", "{}")]),
        Message("tool", [ToolResult("c2", (TextPart("done"),))]),
    ]
    last = history[-2:]
    budget = tokenizer.count_messages([history[0], *last, history[4], history[5]]) + 5
    trimmed = tokenizer.trim_to_fit(history, budget)
    assert trimmed == [history[0], history[4], history[5], *last]
    # Never a result without its call, whatever the budget.
    for size in range(0, tokenizer.count_messages(history) + 10, 50):
        kept = tokenizer.trim_to_fit(history, size)
        for i, message in enumerate(kept):
            if message.role == "tool":
                assert kept[i - 1].role in ("assistant", "tool")
        assert kept[-2:] == last
