"""The always-available answerer: quotes the most relevant passages, or says no model is set up."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from mtai.providers.llm.base import Completion, CompletionRequest, Delta, StreamEnd, StreamEvent
from mtai.providers.llm.capabilities import Support, table

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


def cut(text: str, stop: tuple[str, ...]) -> str:
    """`text` up to the first of the stop sequences in it, as a model would stop there."""
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(found)] if found else text


# The answer is one deterministic text: any temperature, top_p, top_k or seed is satisfied by
# it (it is what greedy decoding with that seed would give), so they are honoured, not dropped.
# Stop sequences cut it. Nothing else can be: it writes no tool calls, JSON, or logprobs.
SUPPORT = table(
    temperature=Support.NATIVE,
    top_p=Support.NATIVE,
    top_k=Support.NATIVE,
    seed=Support.NATIVE,
    stop=Support.NATIVE,
)


class ExtractiveProvider:
    name = "extractive"
    support = SUPPORT

    async def complete(self, request: CompletionRequest) -> Completion:
        # Usage is counted by the gateway with its tokenizer: nothing was sent anywhere.
        return Completion(text=cut(answer(request), request.generation.stop), usage=None)

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        first, *rest = cut(answer(request), request.generation.stop).split("\n\n")
        yield Delta(first)
        for piece in rest:
            yield Delta("\n\n" + piece)
        yield StreamEnd(None)

    async def aclose(self) -> None:
        """Nothing to release."""
