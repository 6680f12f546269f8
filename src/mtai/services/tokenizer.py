"""Token counting offline (cl100k, exact BPE via quicktok), for history trimming and estimates.

Upstream usage figures are what we bill; these counts are used where the upstream gives none
(the extractive answerer, a stream cut short) and to fit history into the context window.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import quicktok

from mtai.providers.llm.base import Message

# OpenAI's accounting for chat formatting: a few tokens per message and for the reply primer.
PER_MESSAGE = 4
REPLY_PRIMER = 3


@lru_cache(maxsize=1)
def _encoding() -> Any:
    return quicktok.get_encoding("cl100k_base")


def count(text: str) -> int:
    return int(_encoding().count(text))


def count_messages(messages: list[Message]) -> int:
    return sum(count(m.content) + PER_MESSAGE for m in messages) + REPLY_PRIMER


def trim_to_fit(messages: list[Message], budget: int) -> list[Message]:
    """System messages and the newest turns that fit in `budget` tokens, oldest dropped first.

    The last message (the new question) is always kept; the caller rejects it if even that
    does not fit.
    """
    system = [m for m in messages if m.role == "system"]
    turns = [m for m in messages if m.role != "system"]
    used = count_messages(system) + count_messages(turns[-1:]) - REPLY_PRIMER
    kept = turns[-1:]
    for message in reversed(turns[:-1]):
        cost = count(message.content) + PER_MESSAGE
        if used + cost > budget:
            break
        kept.insert(0, message)
        used += cost
    return system + kept
