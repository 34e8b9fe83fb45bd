"""Reading an ONNX classifier, whether edgekit exported it or someone else did.

Other people's files differ from ours: a static batch of 1, a Softmax at the end (so the output is
already probabilities), an input named `data`, an older opset. `inspect_onnx` finds all of that out
so the rest of edgekit adapts instead of guessing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgekit.core.errors import EdgekitError

# Nodes that pass a Softmax's result through unchanged in value (only reshaping it).
_SHAPE_ONLY_OPS = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})


@dataclasses.dataclass(frozen=True)
class OnnxInfo:
    input_name: str
    output_name: str
    batch: int | None  # None = dynamic batch axis
    height: int | None
    width: int | None
    num_classes: int | None
    output_kind: str  # "logits" or "probabilities" (a Softmax ends the graph)
    opset: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _dim(dim: Any) -> int | None:
    return int(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else None


def load_checked(path: Path) -> Any:
    """onnx.ModelProto, after onnx's own checker, with any external data checked and taken in (so the model is
    self-contained); a clear error for anything that is not valid ONNX."""
    import onnx
    from google.protobuf.message import DecodeError

    from edgekit.export.onnx_external_data import external_data_files

    if not path.is_file():
        raise EdgekitError(f"{path} does not exist or is not a file")
    external_data_files(path)  # every location checked before onnx reads one
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise EdgekitError(
            f"{path} is not a readable ONNX model ({str(exc)[:160] or 'corrupt'}); re-export it"
        ) from None
    if not model.graph.node:
        raise EdgekitError(f"{path} is not a readable ONNX model (its graph is empty); re-export it")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise EdgekitError(f"{path} is not a valid ONNX model: {first}") from None
    return model


def self_contained_bytes(path: Path) -> bytes:
    """The bytes of the ONNX file at `path` with any external data taken in: what a runtime may be given (one
    given bytes resolves external locations against its working directory)."""
    from edgekit.core.onnx_external import NotOnnx, external_tensors

    raw = path.read_bytes()
    try:
        external = external_tensors(raw)
    except NotOnnx:
        external = []  # load_checked, which compile ran first, reports a file that is not ONNX
    if not external:
        return raw
    return bytes(load_checked(path).SerializeToString())  # checks the locations and hashes the data once


def _output_kind(model: Any, output_name: str) -> str:
    producers = {out: node for node in model.graph.node for out in node.output}
    name = output_name
    while name in producers:
        node = producers[name]
        if node.op_type in ("Softmax", "LogSoftmax"):
            return "probabilities" if node.op_type == "Softmax" else "log-probabilities"
        if node.op_type not in _SHAPE_ONLY_OPS:
            return "logits"
        name = node.input[0]
    return "logits"


def layer_groups(path: Path) -> tuple[str, ...]:
    """The layer groups of an ONNX file that hold weights (a Conv, Gemm or MatMul), in forward order
    (`core.layer_groups`): keeping a pooling or activation group in FP32 changes nothing worth a build.
    The top-level group is kept where it computes something (transform_input's re-normalisation)."""
    import onnx

    from edgekit.core.layer_groups import TOP_LEVEL, group_of, groups_in_order

    nodes = list(onnx.load(str(path), load_external_data=False).graph.node)
    weighted = {group_of(n.name) for n in nodes if n.op_type in ("Conv", "Gemm", "MatMul")}
    computing_top = any(
        group_of(n.name) == TOP_LEVEL and n.op_type not in ("Identity", "Constant", "Flatten") for n in nodes
    )
    return tuple(
        g for g in groups_in_order(n.name for n in nodes) if g in weighted or (g == TOP_LEVEL and computing_top)
    )


def inspect_onnx(path: Path) -> OnnxInfo:
    """Validate an image classifier ONNX file and describe its interface."""
    model = load_checked(path)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) < 1:
        raise EdgekitError(f"{path}: expected one image input and one output, found {len(inputs)} input(s)")
    tensor = inputs[0].type.tensor_type
    dims = [_dim(d) for d in tensor.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or tensor.elem_type != 1:  # 1 = FLOAT
        raise EdgekitError(
            f"{path}: input {inputs[0].name!r} must be float32 NCHW with 3 channels, got shape "
            f"{['?' if d is None else d for d in dims]}"
        )
    output = model.graph.output[0]
    out_dims = [_dim(d) for d in output.type.tensor_type.shape.dim]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxInfo(
        input_name=inputs[0].name,
        output_name=output.name,
        batch=dims[0],
        height=dims[2],
        width=dims[3],
        num_classes=out_dims[-1] if out_dims else None,
        output_kind=_output_kind(model, output.name),
        opset=int(opset),
    )
