"""The always-available answerer: quotes the most relevant passages, or says no model is set up."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from mtai.providers.llm.capabilities import Support, table
from mtai.providers.llm.base import Completion, CompletionRequest, Delta, StreamEnd, StreamEvent

NO_MODEL = (
    "No language model is configured for this tenant, so I cannot write an answer. "
    "An administrator can add one (OpenAI-compatible, Anthropic, Bedrock or the local model) "
    "in the model catalog. With retrieval (use_rag) on, I quote the most relevant passages "
    "of your documents instead."
)
MAX_QUOTES = 3
MAX_QUOTE_CHARS = 600


def answer(request: CompletionRequest) -> str:
    if not request.sources:
        return NO_MODEL
    lines = ["No language model is configured; these passages of your documents match best:"]
    for source in request.sources[:MAX_QUOTES]:
        quote = " ".join(source.text.split())
        if len(quote) > MAX_QUOTE_CHARS:
            quote = quote[:MAX_QUOTE_CHARS].rsplit(" ", 1)[0] + " ..."
        lines.append(f'[{source.number}] {source.title}: "{quote}"')
    return "\n\n".join(lines)


SUPPORT = table(temperature=Support.NATIVE)


class ExtractiveProvider:
    name = "extractive"
    support = SUPPORT

    async def complete(self, request: CompletionRequest) -> Completion:
        # Usage is counted by the gateway with its tokenizer: nothing was sent anywhere.
        return Completion(text=answer(request), usage=None)

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        first, *rest = answer(request).split("\n\n")
        yield Delta(first)
        for piece in rest:
            yield Delta("\n\n" + piece)
        yield StreamEnd(None)

    async def aclose(self) -> None:
        """Nothing to release."""
