"""The ONNX graph of a BERT sentence embedder, written node by node from its weights, and the
ONNX Runtime session made from it (see minilm_onnx.py). Imported when a session is first built:
the onnx package takes half a second to import, which every `mtai` command would otherwise pay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper

from mtai.providers.embeddings.minilm import Array, _Weights
from mtai.providers.embeddings.minilm_onnx import Q4Matrix

# Opset 17, the first with LayerNormalization; every operator used is standard ONNX. IR version
# 8 is opset 17's: pinned, as onnx would stamp its own newest, which older runtimes refuse.
_OPSET = 17
_IR_VERSION = 8
# ONNX Runtime's own operators (MatMulNBits, GatherBlockQuantized), version 1.
_CONTRIB = "com.microsoft"
# The numpy embedder's additive mask: padding keys get exactly zero attention weight.
_MASKED = -1e9
# Float tensors at least this large are not copied into the serialised model: ONNX Runtime is
# handed the arrays themselves as external initializers (small constants must stay inline,
# shape inference reads them).
_EXTERNAL_MIN_ELEMENTS = 1024
_EXTERNAL_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.uint8): TensorProto.UINT8}


class _Graph:
    """Nodes and initializers of the graph under construction, each with a fresh name."""

    def __init__(self) -> None:
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.external: dict[str, Array] = {}
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: npt.ArrayLike, dtype: type[np.generic]) -> str:
        name = self._name(hint)
        array = np.ascontiguousarray(value, dtype=dtype)
        if array.dtype in _EXTERNAL_TYPES and array.size >= _EXTERNAL_MIN_ELEMENTS:
            tensor = TensorProto(
                name=name,
                dims=array.shape,
                data_type=_EXTERNAL_TYPES[array.dtype],
                data_location=TensorProto.EXTERNAL,
            )
            location = tensor.external_data.add()
            location.key, location.value = "location", "memory"
            self.external[name] = array
            self.initializers.append(tensor)
        else:
            self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, domain: str = "", **attributes: object) -> str:
        """One node with one output, whose name it returns."""
        output = self._name(op_type.lower())
        node = helper.make_node(op_type, list(inputs), [output], domain=domain)
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attributes.items())
        self.nodes.append(node)
        return output

    def dense(self, x: str, weight: Array | Q4Matrix, bias: Array, hint: str) -> str:
        b = self.const(f"{hint}_b", bias, np.float32)
        if isinstance(weight, Q4Matrix):
            # Activations quantised to int8 per block (accuracy level 4): ONNX Runtime's integer
            # kernels, 1.4x the float path for multilingual-e5-small, cosine 0.9999 to it.
            product = self.op(
                "MatMulNBits",
                x,
                self.const(f"{hint}_q", weight.packed, np.uint8),
                self.const(f"{hint}_s", weight.scales, np.float32),
                domain=_CONTRIB,
                K=weight.columns,
                N=weight.rows,
                bits=4,
                block_size=32,
                accuracy_level=4,
            )
            return self.op("Add", product, b)
        return self.op("Add", self.op("MatMul", x, self.const(f"{hint}_w", weight, np.float32)), b)

    def gather(self, table: Array | Q4Matrix, ids: str, hint: str) -> str:
        """Rows of `table`; a 4-bit one is dequantised row by row as it is read (a 250,000-row
        vocabulary stays 60 MB instead of 384 MB in float32)."""
        if isinstance(table, Q4Matrix):
            return self.op(
                "GatherBlockQuantized",
                self.const(f"{hint}_q", table.packed.reshape(table.rows, -1), np.uint8),
                ids,
                self.const(f"{hint}_s", table.scales.reshape(table.rows, -1), np.float32),
                domain=_CONTRIB,
                bits=4,
                block_size=32,
                gather_axis=0,
                quantize_axis=1,
            )
        return self.op("Gather", self.const(hint, table, np.float32), ids)

    def layer_norm(self, x: str, weight: Array, bias: Array, eps: float, hint: str) -> str:
        w = self.const(f"{hint}_w", weight, np.float32)
        b = self.const(f"{hint}_b", bias, np.float32)
        return self.op("LayerNormalization", x, w, b, axis=-1, epsilon=eps)


@dataclass(frozen=True, slots=True)
class _Model:
    graph: ModelProto
    external: dict[str, Array]  # initializer name -> the array ONNX Runtime is given for it


def build_model(weights: _Weights[Array | Q4Matrix], name: str) -> _Model:
    """input_ids, attention_mask (int64 [batch, seq]) -> embeddings (float32 [batch, hidden])."""
    g = _Graph()
    hidden = weights.position.shape[1]
    heads = weights.heads
    head_dim = hidden // heads
    eps = float(weights.eps)
    axis1 = g.const("axis1", [1], np.int64)

    # Word embeddings + (position + token type 0) embeddings of positions 0..seq-1, LayerNorm.
    seq = g.op("Slice", g.op("Shape", "input_ids"), axis1, g.const("two", [2], np.int64))  # [seq]
    positions = g.op(
        "Slice",
        g.const("position", weights.position, np.float32),
        g.const("zero", [0], np.int64),
        seq,
        g.const("axis0", [0], np.int64),
    )
    words = g.gather(weights.word, "input_ids", "word")
    x = g.layer_norm(g.op("Add", words, positions), weights.norm_w, weights.norm_b, eps, "emb")

    # (1 - mask) * -1e9 added to the scores of each key: [batch, 1 (heads), 1 (queries), seq].
    one = g.const("one", 1.0, np.float32)
    real = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    padding = g.op("Sub", one, real)
    mask_bias = g.op(
        "Unsqueeze",
        g.op("Mul", padding, g.const("masked", _MASKED, np.float32)),
        g.const("axes12", [1, 2], np.int64),
    )
    thirds = g.const("thirds", [hidden] * 3, np.int64)
    split_heads = g.const("split_heads", [0, 0, heads, head_dim], np.int64)
    merge_heads = g.const("merge_heads", [0, 0, hidden], np.int64)
    sqrt2 = g.const("sqrt2", np.sqrt(2.0), np.float32)
    half = g.const("half", 0.5, np.float32)

    for i, layer in enumerate(weights.layers):
        # One matmul for query (pre-scaled by 1/sqrt(head_dim)), key and value, as in minilm.py.
        qkv = g.dense(x, layer.qkv_w, layer.qkv_b, f"l{i}_qkv")
        q_k_v = [f"l{i}_{part}" for part in ("q", "k", "v")]
        g.nodes.append(helper.make_node("Split", [qkv, thirds], q_k_v, axis=-1))
        # [batch, seq, hidden] -> [batch, heads, seq, head_dim]; keys -> [batch, heads, dim, seq].
        q, k, v = (g.op("Reshape", part, split_heads) for part in q_k_v)
        q = g.op("Transpose", q, perm=[0, 2, 1, 3])
        k = g.op("Transpose", k, perm=[0, 2, 3, 1])
        v = g.op("Transpose", v, perm=[0, 2, 1, 3])
        scores = g.op("Add", g.op("MatMul", q, k), mask_bias)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        attended = g.op("Add", g.dense(context, layer.out_w, layer.out_b, f"l{i}_out"), x)
        x = g.layer_norm(attended, layer.attn_norm_w, layer.attn_norm_b, eps, f"l{i}_attn_norm")
        # Exact GELU, 0.5 * u * (1 + erf(u / sqrt(2))), spelt the way ONNX Runtime recognises:
        # it becomes one BiasGelu kernel (erf, not the tanh approximation) with the bias Add.
        up = g.dense(x, layer.up_w, layer.up_b, f"l{i}_up")
        erf = g.op("Erf", g.op("Div", up, sqrt2))
        gelu = g.op("Mul", g.op("Mul", up, half), g.op("Add", erf, one))
        down = g.op("Add", g.dense(gelu, layer.down_w, layer.down_b, f"l{i}_down"), x)
        x = g.layer_norm(down, layer.ffn_norm_w, layer.ffn_norm_b, eps, f"l{i}_ffn_norm")

    # Mean over real tokens ([batch, 1, seq] @ [batch, seq, hidden]), then unit length; a zero
    # row would stay zero, as in minilm.py (it cannot occur: [CLS] and [SEP] are always real).
    summed = g.op("Squeeze", g.op("MatMul", g.op("Unsqueeze", real, axis1), x), axis1)
    pooled = g.op("Div", summed, g.op("ReduceSum", real, axis1, keepdims=1))
    norms = g.op("ReduceL2", pooled, axes=[1], keepdims=1)  # axes an attribute until opset 18
    divisor = g.op("Max", norms, g.const("tiny", 1e-12, np.float32))
    g.nodes.append(helper.make_node("Div", [pooled, divisor], ["embeddings"]))

    graph = helper.make_graph(
        g.nodes,
        name,
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid(_CONTRIB, 1)],
        ir_version=_IR_VERSION,
        producer_name="mtai",
    )
    return _Model(graph=model, external=g.external)


def built_session(model: _Model, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: as fast here, and the event loop, database
    # and ingestion workers sharing these CPUs get them back between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # ONNX Runtime copies external initializers while the session is built (onnxruntime >= 1.12
    # documents that the arrays may be freed afterwards): the weights are never held twice
    # beyond that, nor copied into the serialised graph.
    names = list(model.external)
    options.add_external_initializers(
        names, [ort.OrtValue.ortvalue_from_numpy(model.external[name]) for name in names]
    )
    return ort.InferenceSession(
        model.graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
