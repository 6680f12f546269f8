"""all-MiniLM-L6-v2 sentence embeddings on the CPU with ONNX Runtime, built without torch.

The ONNX graph is written node by node (`onnx_graph.py`) from the weights the numpy embedder
(`minilm.py`) loads, and handed to ONNX Runtime in memory: nothing is exported with torch,
downloaded or written to disk. The graph computes what `minilm._forward` computes, in float32:
BERT encoder with exact (erf) GELU, mean pooling over real tokens, L2 normalisation.
Tokenisation, truncation and token counting are the numpy embedder's own.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from mtai.providers.embeddings.minilm import (
    Array,
    Ids,
    MiniLMEmbedder,
    _Weights,
)


@dataclass(frozen=True, slots=True)
class Q4Matrix:
    """A (rows, columns) projection in 4-bit blocks, for ONNX Runtime's MatMulNBits: row r's
    columns 32b..32b+31 are `(packed nibble - 8) * scales[r * blocks + b]`, two nibbles a byte,
    the lower one first. Multiplied as `x @ matrix.T`, like torch's (out, in) weights."""

    packed: npt.NDArray[np.uint8]  # (rows, columns // 32, 16)
    scales: Array  # (rows * columns // 32,)
    rows: int
    columns: int


def _cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _session(
    load: Callable[[], _Weights[Array | Q4Matrix]], name: str, threads: int
) -> ort.InferenceSession:
    """The session of the weights `load` returns; they and the graph are freed (and the heap
    trimmed) before it is returned, so only ONNX Runtime's copy stays."""
    # Imported here, not at the top: see onnx_graph's docstring.
    from mtai.providers.embeddings.onnx_graph import build_model, built_session

    session = built_session(build_model(load(), name), threads)
    _release_freed_memory()
    return session


def _release_freed_memory() -> None:
    """Hand the weights' freed copies back to the system: glibc keeps freed heap in the process
    (about 70 MiB here) unless asked to trim it."""
    gc.collect()
    # Not glibc (musl, macOS): nothing to trim this way.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class OnnxMiniLMEmbedder(MiniLMEmbedder):
    """`MiniLMEmbedder` with its forward pass run by ONNX Runtime.

    Same model name, vectors (to float32 rounding), tokenisation and batching; the session is
    built lazily under the lock and, like the numpy weights, safe to share between threads.
    `threads` is ONNX Runtime's intra-op pool size: all the CPUs this process may use by default.
    """

    def __init__(
        self, model_dir: Path | None = None, batch_size: int = 32, threads: int | None = None
    ) -> None:
        super().__init__(model_dir, batch_size)
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads if threads is not None else _cpu_count()
        self._session: ort.InferenceSession | None = None

    def _get_session(self) -> ort.InferenceSession:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = _session(self._graph_weights, self.name, self.threads)
        return self._session

    def _graph_weights(self) -> _Weights[Array | Q4Matrix]:
        """The weights the ONNX graph is built from: the numpy embedder's."""
        return self._read_weights()

    def _batch_forward(self) -> Callable[[Ids, Ids], Array]:
        session = self._get_session()
        # The CPU arena keeps the largest batch's activations for good (RSS 640 MB after
        # embedding the evaluation corpus); shrinking it after each run returns them at the
        # same speed (350 MB; measured in docs/benchmarks.md's memory section).
        shrink = ort.RunOptions()
        shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

        def forward(ids: Ids, lengths: Ids) -> Array:
            mask = (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.int64)
            (rows,) = session.run(
                ["embeddings"], {"input_ids": ids, "attention_mask": mask}, shrink
            )
            return np.asarray(rows, dtype=np.float32)

        return forward
