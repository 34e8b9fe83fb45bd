"""TensorRT's explicit-quantization rules, written down and checked on every `tensorrt` INT8 file.

TensorRT (8.6 → 11.x) builds INT8 from Q/DQ nodes in the ONNX file. It fuses them into INT8 kernels
only under these rules, and 8.2–8.4's parser (Jetson Nano, older Xavier images) rejects files that
break the first ones outright (onnx-tensorrt docs/operators.md; TensorRT developer guide, "Explicit
Quantization"):

- int8-zero-point: every QuantizeLinear/DequantizeLinear has an explicit INT8 zero point of 0
  (signed symmetric; no UINT8, no asymmetric activations).
- per-channel-weights: Conv/Gemm weights are INT8 initializers (or Q of a float initializer) whose
  DequantizeLinear has one scale per output channel on axis 0 (TensorRT's only weight axis).
- per-tensor-activations: activation Q/DQ scales are scalars.
- quantized-inputs: every Conv/Gemm reads both its data input and its weight through
  DequantizeLinear, so TensorRT can run it in INT8 (except the layer groups deliberately kept in
  float by the accuracy guard: TensorRT runs those in FP16/FP32).
- float-bias: biases stay float initializers; an INT32 DequantizeLinear bias is not parsed.
- concat-shared-scale: all DQ-fed inputs of one Concat share the same scale, so TensorRT can keep
  the concatenation in INT8 instead of requantizing each branch (GoogLeNet, Inception v3, DenseNet).
- residual-add: both inputs of a residual Add (one of them computed by a Conv: ResNet, MobileNetV2/V3,
  EfficientNet, RegNet) come through DequantizeLinear: the guide's "quantize the residual input"
  placement, under which TensorRT fuses the Add into the Conv that feeds it and runs the pair in INT8.
  The Add's own output is quantized only where the next Conv reads it (quantized-inputs). A
  squeeze-excitation block needs no rule of its own: its gate (a Sigmoid or HardSigmoid of a 1×1 Conv)
  multiplies in float, TensorRT fuses that pointwise, and the projection Conv that reads the product is
  held to quantized-inputs like every Conv.
- opset: at least 13 (per-channel DequantizeLinear needs its `axis` attribute).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.layer_groups import group_of

RULES = (
    "int8-zero-point",
    "per-channel-weights",
    "per-tensor-activations",
    "quantized-inputs",
    "float-bias",
    "concat-shared-scale",
    "residual-add",
    "opset",
)
CONV_OPS = ("Conv", "Gemm")


@dataclasses.dataclass(frozen=True)
class Violation:
    rule: str
    node: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule} at {self.node}: {self.detail}"


class _Graph:
    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.model = model
        self.initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.producer = {out: node for node in model.graph.node for out in node.output}

    def value(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return self.initializers[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            from onnx import numpy_helper

            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def dq_of(self, name: str) -> Any | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None


def _axis(node: Any) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def check_tensorrt_qdq(model: Any, float_groups: Iterable[str] = ()) -> list[Violation]:
    """Every rule `model` (an onnx.ModelProto) breaks; empty when TensorRT can build it as INT8, apart from
    the layer groups in `float_groups` (kept in float on purpose)."""
    kept = set(float_groups)
    graph = _Graph(model)
    found: list[Violation] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        found.append(Violation("opset", "model", f"opset {opset} < 13"))
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = graph.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if zero_point is None or zero_point.dtype != np.int8 or np.any(zero_point != 0):
                kind = (
                    "missing (UINT8 by default)"
                    if zero_point is None
                    else f"{zero_point.dtype}, max {zero_point.max()}"
                )
                found.append(Violation("int8-zero-point", node.name, f"zero point {kind}"))
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or group_of(node.name) in kept:
            continue
        data_dq, weight_dq = graph.dq_of(node.input[0]), graph.dq_of(node.input[1])
        if data_dq is None or weight_dq is None:
            missing = "data input" if data_dq is None else "weight"
            found.append(Violation("quantized-inputs", node.name, f"{missing} is not read through DequantizeLinear"))
        if data_dq is not None:
            scale = graph.value(data_dq.input[1])
            if scale is None or scale.size != 1:
                found.append(Violation("per-tensor-activations", node.name, "activation scale is not a scalar"))
        if weight_dq is not None:
            found.extend(_check_weight(graph, node, weight_dq))
        if len(node.input) > 2 and node.input[2] and graph.dq_of(node.input[2]) is not None:
            found.append(Violation("float-bias", node.name, "bias comes from an INT32 DequantizeLinear"))
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        scales = [graph.value(dq.input[1]) for dq in map(graph.dq_of, node.input) if dq is not None]
        values = {float(s.reshape(-1)[0]) for s in scales if s is not None}
        if len(values) > 1:
            found.append(Violation("concat-shared-scale", node.name, f"{len(values)} different input scales"))
    for node in model.graph.node:
        if node.op_type == "Add" and _is_residual(graph, node) and group_of(node.name) not in kept:
            unquantized = [name for name in node.input if graph.dq_of(name) is None]
            if unquantized:
                found.append(Violation("residual-add", node.name, f"input {unquantized[0]} is not read through DQ"))
    return found


def _source(graph: _Graph, name: str) -> Any | None:
    """The node that computes `name`, looking through a Q/DQ pair."""
    node = graph.producer.get(name)
    while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        node = graph.producer.get(node.input[0])
    return node


def _is_residual(graph: _Graph, node: Any) -> bool:
    """An Add of two computed tensors, one of them a Conv's output: a residual connection (transform_input's
    shift and a bias add have a constant input)."""
    if len(node.input) != 2 or any(graph.value(name) is not None for name in node.input):
        return False
    sources = [_source(graph, name) for name in node.input]
    return any(source is not None and source.op_type in CONV_OPS for source in sources)


def residual_adds(model: Any) -> list[str]:
    """The names of `model`'s residual Adds (see `_is_residual`), for the quantizer to quantize their inputs."""
    graph = _Graph(model)
    return [node.name for node in model.graph.node if node.op_type == "Add" and _is_residual(graph, node)]


def _check_weight(graph: _Graph, node: Any, weight_dq: Any) -> list[Violation]:
    source = weight_dq.input[0]
    weight = graph.value(source)
    if weight is None:  # Q of a float initializer is the other accepted form
        quantize = graph.producer.get(source)
        weight = (
            graph.value(quantize.input[0]) if quantize is not None and quantize.op_type == "QuantizeLinear" else None
        )
    scale = graph.value(weight_dq.input[1])
    if weight is None or scale is None:
        return [Violation("per-channel-weights", node.name, "weight or its scale is not a constant")]
    out_channels = weight.shape[0]
    if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
        out_channels = weight.shape[1]
    if scale.size != out_channels or (scale.size > 1 and _axis(weight_dq) != 0):
        return [
            Violation(
                "per-channel-weights",
                node.name,
                f"{scale.size} weight scale(s) on axis {_axis(weight_dq)}, expected {out_channels} on axis 0",
            )
        ]
    return []


def check_file(path: Path, float_groups: Iterable[str] = ()) -> list[Violation]:
    import onnx

    return check_tensorrt_qdq(onnx.load(str(path)), float_groups)


def share_concat_scales(path: Path) -> None:
    """Give all DQ-fed inputs of each Concat the largest of their scales (Q and DQ of a tensor share
    one scale initializer, so the pair stays consistent)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = _Graph(model)
    by_name = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        names = [dq.input[1] for dq in map(graph.dq_of, node.input) if dq is not None]
        names = [n for n in dict.fromkeys(names) if n in by_name]
        if len(names) < 2:
            continue
        shared = max(float(graph.initializers[n].reshape(-1)[0]) for n in names)
        for name in names:
            value = np.asarray(shared, dtype=graph.initializers[name].dtype).reshape(graph.initializers[name].shape)
            by_name[name].CopyFrom(numpy_helper.from_array(value, name))
            graph.initializers[name] = value
    onnx.save(model, str(path))
