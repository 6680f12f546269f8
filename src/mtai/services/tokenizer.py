"""Token counting offline (cl100k, exact BPE via quicktok), for history trimming and estimates.

Upstream usage figures are what we bill; these counts are used where the upstream gives none
(the extractive answerer, a stream cut short) and to fit history into the context window.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import quicktok

from mtai.providers.llm.conversation import Generation, Message

# OpenAI's accounting for chat formatting: a few tokens per message and for the reply primer.
PER_MESSAGE = 4
REPLY_PRIMER = 3
PER_TOOL = 8  # a call's or a definition's framing (ids, types, braces)
# The most one image costs on the providers we call: Anthropic ~1,600 tokens at its largest
# size, OpenAI 1,105 at "high" detail; used for budgets and window checks, never billed.
IMAGE_TOKENS = 1_600


@lru_cache(maxsize=1)
def _encoding() -> Any:
    return quicktok.get_encoding("cl100k_base")


def count(text: str) -> int:
    return int(_encoding().count(text))


def count_message(message: Message) -> int:
    """A message's tokens: its text, tool calls and tool results, and a fixed worst case per
    image (what a provider bills for one depends on its size, unknown until it is decoded)."""
    tokens = count(message.content) + PER_MESSAGE + IMAGE_TOKENS * len(message.images)
    for call in message.tool_calls:
        tokens += count(call.name) + count(call.arguments) + PER_TOOL
    for result in message.tool_results:
        tokens += count(result.text) + PER_TOOL
    return tokens


def count_messages(messages: list[Message]) -> int:
    return sum(count_message(m) for m in messages) + REPLY_PRIMER


def count_settings(generation: Generation) -> int:
    """What the tool definitions and the response format's schema add to the prompt."""
    material = [
        json.dumps({"n": t.name, "d": t.description, "p": t.parameters}, default=str)
        for t in generation.tools
    ]
    if generation.response_format is not None and generation.response_format.schema:
        material.append(json.dumps(generation.response_format.schema, default=str))
    return sum(count(text) + PER_TOOL for text in material)


def exchanges(messages: list[Message]) -> list[list[Message]]:
    """The non-system messages in units that must stay together: an assistant message that
    calls tools and the tool messages answering it (an upstream refuses one without the
    other)."""
    units: list[list[Message]] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool" and units and units[-1][0].tool_calls:
            units[-1].append(message)
        else:
            units.append([message])
    return units


def trim_to_fit(messages: list[Message], budget: int) -> list[Message]:
    """System messages and the newest exchanges that fit in `budget` tokens, oldest dropped
    first.

    The last exchange (the new question, or the tool results being answered) is always kept;
    the caller rejects the request if even that does not fit.
    """
    system = [m for m in messages if m.role == "system"]
    units = exchanges(messages)
    if not units:
        return system
    used = count_messages(system) + sum(count_message(m) for m in units[-1])
    kept = list(units[-1])
    for unit in reversed(units[:-1]):
        cost = sum(count_message(m) for m in unit)
        if used + cost > budget:
            break
        kept[:0] = unit
        used += cost
    return system + kept
