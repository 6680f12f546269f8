"""What a catalog model can do as callers see it: its flags, as far as its provider carries them.

A model flagged for tools behind a provider adapter that refuses tools cannot take a tool
request, so the flag shown is the catalog's AND the provider's table.
"""

from __future__ import annotations

from collections.abc import Mapping

from mtai.providers.llm.capabilities import MODEL_FLAGS, Support
from mtai.providers.llm.registry import SUPPORT_BY_PROVIDER
from mtai.services.catalog import ModelSpec

# The features whose support says a provider can carry a flag's ability at all (any of them):
# tool_choice.none alone is no tool calling, JSON mode alone is no schema.
CARRIERS: Mapping[str, tuple[str, ...]] = {
    "tools": ("tools",),
    "vision": ("image_url", "image_data"),
    "json_schema": ("response_format.json_schema",),
}


def effective(spec: ModelSpec) -> dict[str, bool]:
    """Each flag of MODEL_FLAGS: True when the catalog allows it (absent: allowed) and the
    model's provider does not refuse it."""
    support = SUPPORT_BY_PROVIDER.get(spec.provider, {})
    return {
        flag: spec.capabilities.get(flag, True)
        and any(support.get(f, Support.REFUSED) is not Support.REFUSED for f in CARRIERS[flag])
        for flag in MODEL_FLAGS
    }
