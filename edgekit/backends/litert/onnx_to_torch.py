"""An ONNX classifier graph rebuilt as a `torch.nn.Module`, for converters that start from PyTorch.

Every edgekit backend builds from the same FP32 ONNX file (an edgekit export or someone else's
classifier), so the LiteRT backend does too; its converter (litert-torch) reads PyTorch. The graph
is rebuilt op by op with every shape, axis and index fixed at conversion time, because
`torch.export` must see no data-dependent Python values (onnx2torch's Gather calls `.item()` and
fails there). Each node is a submodule named after its layer group (`inception4a`, `fc`, … as in
`edgekit.backends.qdq`), so the converted model's tensor names say where they come from. Ops
outside what classifiers use raise an EdgekitError naming them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit.core.errors import EdgekitError

# Inputs that must be constants (shapes, axes, indices), read as Python values at conversion time.
_STATIC_INPUTS = {"Reshape": {1}, "Unsqueeze": {1}, "Squeeze": {1}, "Gather": {1}, "Slice": {1, 2, 3, 4},
                  "Clip": {1, 2}, "Pad": {1, 2, 3}, "ReduceMean": {1}, "ReduceMax": {1}}  # fmt: skip


class _Node(nn.Module):
    """One ONNX node: `fn` applied to its runtime inputs and its constant (buffer) inputs, in order."""

    def __init__(self, fn: Callable[..., Any], slots: list[tuple[str, str | int]], constants: list[np.ndarray]) -> None:
        super().__init__()
        self.fn = fn
        self.slots = slots  # ("env", tensor name) or ("const", buffer index)
        for i, value in enumerate(constants):
            self.register_buffer(f"c{i}", torch.from_numpy(np.array(value)), persistent=False)

    def forward(self, *runtime: torch.Tensor) -> Any:
        values = iter(runtime)
        args = [next(values) if kind == "env" else getattr(self, f"c{ref}") for kind, ref in self.slots]
        return self.fn(*args)


class OnnxModule(nn.Module):
    """The graph of one ONNX file as a module: one float input, its first output.

    Nodes are direct children named `<layer group>_<index>`: litert-torch names tensors after the last
    module called, so the name carries the group (a container such as ModuleDict is never called).
    """

    def __init__(self, nodes: list[tuple[str, _Node, list[str], list[str]]], input_name: str, output: str) -> None:
        super().__init__()
        self.order: list[tuple[str, list[str], list[str]]] = []
        for index, (group, node, inputs, outputs) in enumerate(nodes):
            self.add_module(node_name(group, index), node)
            self.order.append((node_name(group, index), inputs, outputs))
        self.input_name = input_name
        self.output_name = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input_name: x}
        for name, inputs, outputs in self.order:
            result = getattr(self, name)(*[env[i] for i in inputs])
            env.update(zip(outputs, result if isinstance(result, tuple) else (result,), strict=False))
        return env[self.output_name]


def node_name(group: str, index: int) -> str:
    """`layer3_1_12` for node 12 of group layer3.1: a module name cannot hold a dot."""
    return f"{group.replace('.', '_')}_{index}"


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _constant_value(node: Any) -> np.ndarray:
    from onnx import numpy_helper

    attrs = _attrs(node)
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):  # fmt: skip
        if key in attrs:
            return np.array(attrs[key], dtype)
    raise EdgekitError(f"ONNX Constant {node.name!r} has a value kind the LiteRT conversion does not read")


def _pads(pads: list[int] | None, dims: int) -> tuple[list[int], bool]:
    """ONNX [x1_begin, x2_begin, x1_end, x2_end] → F.pad order (last axis first), and whether symmetric."""
    pads = list(pads or [0] * 2 * dims)
    begins, ends = pads[:dims], pads[dims:]
    torch_order = [p for axis in reversed(range(dims)) for p in (begins[axis], ends[axis])]
    return torch_order, begins == ends


def _conv(a: dict[str, Any]) -> Callable[..., torch.Tensor]:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
        raise EdgekitError("ONNX Conv with auto_pad SAME_* is not supported by the LiteRT conversion")
    order, symmetric = _pads(a.get("pads"), 2)
    stride, dilation, groups = a.get("strides", [1, 1]), a.get("dilations", [1, 1]), a.get("group", 1)

    def conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        padding = (order[2], order[0]) if symmetric else 0
        if not symmetric:
            x = F.pad(x, order)
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    return conv


def _pool(a: dict[str, Any], kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") or any(d != 1 for d in a.get("dilations", [1])):
        raise EdgekitError(f"ONNX {kind} with auto_pad SAME_* or dilations is not supported by the LiteRT conversion")
    kernel = a["kernel_shape"]
    stride, ceil = a.get("strides", [1] * len(kernel)), bool(a.get("ceil_mode", 0))
    order, symmetric = _pads(a.get("pads"), len(kernel))
    padding = (order[2], order[0]) if symmetric else 0

    def pool(x: torch.Tensor) -> torch.Tensor:
        if kind == "MaxPool":
            if not symmetric:
                x = F.pad(x, order, value=float("-inf"))
            return F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil)
        if not symmetric:
            x = F.pad(x, order)
        return F.avg_pool2d(x, kernel, stride, padding, ceil, bool(a.get("count_include_pad", 0)))

    return pool


def _gemm(a: dict[str, Any]) -> Callable[..., torch.Tensor]:
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)

    def gemm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        x = x.t() if a.get("transA", 0) else x
        y = torch.matmul(x, w.t() if a.get("transB", 0) else w)
        y = y * alpha if alpha != 1.0 else y
        return y if b is None else y + (b * beta if beta != 1.0 else b)

    return gemm


def _reshape(shape: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    def reshape(x: torch.Tensor) -> torch.Tensor:
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape)])

    return reshape


def _slice(starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None) -> Callable:
    def take(x: torch.Tensor) -> torch.Tensor:
        index = [slice(None)] * x.dim()
        for k, axis in enumerate(axes if axes is not None else range(len(starts))):
            size = x.shape[axis]
            start, end = max(-size, min(starts[k], size)), max(-size - 1, min(ends[k], size))
            index[axis] = slice(start, end, steps[k] if steps else 1)
        return x[tuple(index)]

    return take


def _function(op: str, a: dict[str, Any], static: dict[int, Any], opset: int) -> Callable[..., Any]:
    """The torch function of one ONNX op, its attributes and constant arguments bound."""
    axes = static.get(1, a.get("axes"))
    simple: dict[str, Callable[..., Any]] = {
        "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Add": torch.add, "Sub": torch.sub,
        "Mul": torch.mul, "Div": torch.div, "MatMul": torch.matmul, "Identity": lambda x: x,
        "Dropout": lambda x, *_: x,
        "GlobalAveragePool": lambda x: x.mean(dim=(2, 3), keepdim=True),
        "GlobalMaxPool": lambda x: x.amax(dim=(2, 3), keepdim=True),
        "HardSwish": F.hardswish,  # opset 14+; older exports write x · HardSigmoid(x)
    }  # fmt: skip
    if op in simple:
        return simple[op]
    if op == "HardSigmoid":  # ONNX's defaults (0.2, 0.5) differ from torch's (1/6, 0.5): the file says which
        alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
        return lambda x: torch.clamp(x * alpha + beta, 0.0, 1.0)
    if op in ("ReduceMean", "ReduceMax"):  # global pooling written as a reduction (keras-style exports)
        reduce_axes = static.get(1, a.get("axes"))
        keep = bool(a.get("keepdims", 1))
        dims = tuple(int(i) for i in reduce_axes) if reduce_axes is not None else None
        if op == "ReduceMean":
            return lambda x: x.mean(dim=dims, keepdim=keep) if dims is not None else x.mean()
        return lambda x: x.amax(dim=dims, keepdim=keep) if dims is not None else x.amax()
    if op == "Conv":
        return _conv(a)
    if op in ("MaxPool", "AveragePool"):
        return _pool(a, op)
    if op == "Gemm":
        return _gemm(a)
    if op == "Concat":
        return lambda *xs: torch.cat(xs, dim=a["axis"])
    if op == "Flatten":
        axis = a.get("axis", 1)
        return lambda x: x.reshape(math.prod(x.shape[:axis]), -1)
    if op == "Reshape":
        return _reshape([int(s) for s in static[1]])
    if op == "Unsqueeze":
        return lambda x: x.reshape(_unsqueezed(list(x.shape), [int(i) for i in axes]))
    if op == "Squeeze":
        return lambda x: torch.squeeze(x, tuple(int(i) for i in axes)) if axes is not None else torch.squeeze(x)
    if op == "Gather":
        index, axis = np.asarray(static[1]), a.get("axis", 0)
        if index.ndim == 0:
            return lambda x: x.select(axis, int(index))
        if index.ndim != 1:
            return _unsupported(f"{op} with {index.ndim}-D indices")
        return lambda x: x[(*([slice(None)] * (axis % x.dim())), [int(i) for i in index])]
    if op == "Slice":
        if opset < 10:
            return _slice(a["starts"], a["ends"], a.get("axes"), None)
        values = [None if static.get(i) is None else [int(v) for v in static[i]] for i in (1, 2, 3, 4)]
        return _slice(values[0], values[1], values[2], values[3])
    if op == "Transpose":
        return lambda x: x.permute(a["perm"]) if "perm" in a else x.permute(*reversed(range(x.dim())))
    if op in ("Softmax", "LogSoftmax"):
        fn = F.softmax if op == "Softmax" else F.log_softmax
        return lambda x: fn(x, dim=a.get("axis", -1 if opset >= 13 else 1))
    if op == "Clip":
        low, high = static.get(1, a.get("min")), static.get(2, a.get("max"))
        return lambda x: torch.clamp(x, None if low is None else float(low), None if high is None else float(high))
    if op == "BatchNormalization":
        eps = a.get("epsilon", 1e-5)
        return lambda x, scale, bias, mean, var: F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)
    if op == "Pad" and a.get("mode", b"constant") == b"constant":
        pads = [int(p) for p in static.get(1, a.get("pads", []))]
        order, _ = _pads(pads, len(pads) // 2)
        fill = static.get(2, a.get("value"))
        value = 0.0 if fill is None else float(np.asarray(fill).reshape(-1)[0])
        return lambda x: F.pad(x, order, value=value)
    return _unsupported(op)


def _unsqueezed(shape: list[int], axes: list[int]) -> list[int]:
    rank = len(shape) + len(axes)
    for axis in sorted(a % rank for a in axes):
        shape.insert(axis, 1)
    return shape


def _unsupported(op: str) -> Callable[..., Any]:
    raise EdgekitError(
        f"the ONNX op {op} is not supported by the LiteRT conversion; compile for this target with "
        "--backend onnxruntime"
    )


def onnx_to_torch(path: Path) -> OnnxModule:
    """The FP32 ONNX file at `path` as an eval-mode module with the same outputs."""
    import onnx
    from onnx import numpy_helper

    from edgekit.core.layer_groups import group_of

    model = onnx.load(str(path))
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise EdgekitError(f"{path}: the LiteRT conversion needs exactly one image input, not {len(inputs)}")
    nodes = []
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = _constant_value(node)
            continue
        static_positions = _STATIC_INPUTS.get(node.op_type, set())
        static: dict[int, Any] = {}
        slots: list[tuple[str, str | int]] = []
        buffers: list[np.ndarray] = []
        runtime: list[str] = []
        for position, name in enumerate(node.input):
            if position in static_positions:
                if name and name not in constants:
                    raise EdgekitError(
                        f"{path}: {node.op_type} {node.name!r} takes a computed shape/index; the LiteRT "
                        "conversion needs it constant (export with a fixed input size)"
                    )
                static[position] = constants[name] if name else None
            elif not name:
                continue
            elif name in constants:
                value = constants[name]
                slots.append(("const", len(buffers)))
                buffers.append(value.astype(np.float32) if value.dtype == np.float64 else value)
            else:
                slots.append(("env", name))
                runtime.append(name)
        fn = _function(node.op_type, _attrs(node), static, opset)
        nodes.append((group_of(node.name or f"/{node.op_type}"), _Node(fn, slots, buffers), runtime, list(node.output)))
    return OnnxModule(nodes, inputs[0], graph.output[0].name).eval()
