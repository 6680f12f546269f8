"""A tool call's arguments text read as a JSON object in one place (`ToolCall.arguments_object`),
and what each user of it makes of arguments that are not one: the Anthropic adapter sends {},
Bedrock refuses, the Messages API shows the raw text, the Responses API refuses the input."""

from __future__ import annotations

import pytest

from mtai.api.anthropic_messages import _input
from mtai.api.openai_responses import input_messages
from mtai.config import Settings
from mtai.errors import AppError
from mtai.providers.llm.anthropic import _messages as anthropic_messages
from mtai.providers.llm.base import UpstreamError
from mtai.providers.llm.bedrock import _messages as bedrock_messages
from mtai.providers.llm.conversation import Message, ToolCall

DEEP = "[" * 40_000 + "]" * 40_000  # deeper than json parses: RecursionError
NOT_OBJECTS = ("[1, 2]", '"text"', "{not json", DEEP)


def test_arguments_object() -> None:
    assert ToolCall("c", "f", '{"city": "Lima"}').arguments_object() == {"city": "Lima"}
    assert ToolCall("c", "f", "").arguments_object() == {}
    assert ToolCall("c", "f", "  ").arguments_object() == {}
    for text in NOT_OBJECTS:
        assert ToolCall("c", "f", text).arguments_object() is None, text[:20]


@pytest.mark.parametrize("text", NOT_OBJECTS)
def test_each_user_keeps_its_own_fallback(text: str) -> None:
    call = ToolCall("c1", "f", text)
    turn = [Message("user", "go"), Message("assistant", [call])]
    _, sent = anthropic_messages(turn)
    assert sent[1]["content"][0]["input"] == {}
    with pytest.raises(UpstreamError, match="not a JSON object"):
        bedrock_messages(turn)
    assert _input(call) == {"_raw_arguments": text}
    item = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": text}
    with pytest.raises(AppError, match="must be the JSON text of an object"):
        input_messages([item], Settings(_env_file=None))
