"""What a provider adapter can do with each canonical feature: forward it as is (native),
express it in its own terms (translated), or not at all (refused).

Every adapter declares a `SUPPORT` table over `FEATURES`; the chat-turn pipeline checks a
request against the table of its model and of each fallback before any upstream call, and
docs/gateway.md's capability matrix is generated from the same tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class Support(StrEnum):
    NATIVE = "native"
    TRANSLATED = "translated"
    REFUSED = "refused"


# Feature names as `conversation.features()` reports them.
FEATURES: tuple[str, ...] = (
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "user",
    "tools",
    "tool_choice.auto",
    "tool_choice.none",
    "tool_choice.required",
    "tool_choice.tool",
    "parallel_tool_calls",
    "tool_messages",
    "response_format.json_object",
    "response_format.json_schema",
    "response_format.with_tools",
    "image_data",
    "image_url",
)

# What may be dropped when a model's catalog entry or the request says `drop_params`: settings
# that tune an answer. Tools, tool messages, images and response formats change what the
# answer is, so a model that cannot honour them is refused, never quietly given less.
DROPPABLE: frozenset[str] = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "user",
        "parallel_tool_calls",
    }
)

# The catalog's per-model capability flags, and the features each one gates.
MODEL_FLAGS: Mapping[str, frozenset[str]] = {
    "tools": frozenset(
        {
            "tools",
            "tool_choice.auto",
            "tool_choice.none",
            "tool_choice.required",
            "tool_choice.tool",
            "parallel_tool_calls",
            "tool_messages",
        }
    ),
    "vision": frozenset({"image_data", "image_url"}),
    "json_schema": frozenset(
        {
            "response_format.json_object",
            "response_format.json_schema",
            "response_format.with_tools",
        }
    ),
}


def table(**overrides: Support) -> dict[str, Support]:
    """A support table: every feature refused except those given (dots written as `__`)."""
    support = dict.fromkeys(FEATURES, Support.REFUSED)
    for name, value in overrides.items():
        feature = name.replace("__", ".")
        if feature not in support:
            raise ValueError(f"unknown feature {feature!r}")
        support[feature] = value
    return support


def refused(
    support: Mapping[str, Support], used: Iterable[str], model_flags: Mapping[str, bool]
) -> list[str]:
    """The features of `used` that a provider (its table) or a model (its catalog flags)
    cannot honour, in the order given."""
    blocked = {
        f for flag, gated in MODEL_FLAGS.items() if not model_flags.get(flag, True) for f in gated
    }
    return [f for f in used if support.get(f, Support.REFUSED) is Support.REFUSED or f in blocked]


def matrix(tables: Mapping[str, Mapping[str, Support]]) -> str:
    """The capability matrix as a Markdown table: a row per feature, a column per provider
    (docs/gateway.md holds its output, checked by a test against the tables themselves)."""
    providers = list(tables)
    lines = [
        "| feature | " + " | ".join(providers) + " |",
        "|---|" + "---|" * len(providers),
    ]
    for feature in FEATURES:
        cells = [tables[p].get(feature, Support.REFUSED).value for p in providers]
        mark = " (droppable)" if feature in DROPPABLE else ""
        lines.append(f"| `{feature}`{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
