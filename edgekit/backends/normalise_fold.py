"""Normalisation folded into a model: it takes the uint8 RGB crop (N, H, W, 3) and computes
`pixel × scale + shift` per channel itself (`PreprocessSpec.normalise_in_model`).

ONNX files get four nodes in front (Transpose on the bytes, Cast, Mul, Add) that every ONNX runtime
runs fused with the first convolution's input handling; OpenVINO IR gets its own PrePostProcessor.
The input keeps its name, so a manifest's `input.name` stays true.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.data.preprocess import PreprocessSpec, normalisation_affine


def fold_into_onnx(path: Path, spec: PreprocessSpec) -> None:
    """Rewrite the ONNX file at `path` in place (through a temporary file: never half-written)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    image = _only_input(graph, path, "folding normalisation")
    dims = image.type.tensor_type.shape.dim
    if image.type.tensor_type.elem_type != TensorProto.FLOAT or len(dims) != 4 or dims[1].dim_value != 3:
        raise EdgekitError(f"{path.name}'s input is not float32 N×3×H×W: it cannot take pixels instead")
    name = image.name
    inner = f"{name}__normalised"
    for node in graph.node:  # the network now reads the normalised tensor
        node.input[:] = [inner if value == name else value for value in node.input]
    batch = dims[0].dim_param or dims[0].dim_value or "batch"
    height, width = dims[2].dim_value, dims[3].dim_value
    graph.input.remove(image)
    graph.input.insert(0, helper.make_tensor_value_info(name, TensorProto.UINT8, [batch, height, width, 3]))
    scale, shift = normalisation_affine(spec)
    graph.initializer.extend(
        [
            numpy_helper.from_array(scale.reshape(1, 3, 1, 1), f"{name}__scale"),
            numpy_helper.from_array(shift.reshape(1, 3, 1, 1), f"{name}__shift"),
        ]
    )
    prefix = [
        helper.make_node("Transpose", [name], [f"{name}__nchw"], perm=[0, 3, 1, 2], name="edgekit_pixels_nchw"),
        helper.make_node("Cast", [f"{name}__nchw"], [f"{name}__float"], to=TensorProto.FLOAT, name="edgekit_cast"),
        helper.make_node("Mul", [f"{name}__float", f"{name}__scale"], [f"{name}__scaled"], name="edgekit_scale"),
        helper.make_node("Add", [f"{name}__scaled", f"{name}__shift"], [inner], name="edgekit_shift"),
    ]
    for node in reversed(prefix):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    _replace(path, model.SerializeToString())


def fold_into_openvino(xml: Path, spec: PreprocessSpec) -> None:
    """Rewrite the OpenVINO IR `xml` (and its .bin) with a PrePostProcessor that takes uint8 NHWC pixels."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    if len(model.inputs) != 1:
        raise EdgekitError(f"{xml.name} has {len(model.inputs)} inputs; folding normalisation needs exactly one")
    ppp = ov.preprocess.PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean([255.0 * m for m in spec.mean]).scale(
        [255.0 * s for s in spec.std]
    )
    folded = ppp.build()
    with tempfile.TemporaryDirectory(prefix=".fold-", dir=xml.parent) as tmp:
        ov.save_model(folded, str(Path(tmp) / xml.name), compress_to_fp16=False)
        del folded, model  # the IR's weights are memory-mapped from the .bin about to be replaced
        for produced in Path(tmp).iterdir():
            os.replace(produced, xml.parent / produced.name)


def _only_input(graph: Any, path: Path, purpose: str) -> Any:
    """The graph's one image input (initializers listed as inputs by older exporters are not inputs)."""
    weights = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    if len(inputs) != 1:
        raise EdgekitError(f"{path.name} has {len(inputs)} inputs; {purpose} needs exactly one")
    return inputs[0]


def _replace(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, path)


def float_pixels_onnx(path: Path, spec: PreprocessSpec) -> None:
    """Rewrite the ONNX file at `path` to take float32 N×3×H×W pixel values in 0..255 (what DeepStream's nvinfer
    gives a network with net-scale-factor=1, offsets=0), normalising them itself with the bundle's
    per-channel mean and std, which nvinfer's one scale factor cannot express.

    From a float input (normalised N×3×H×W): Mul and Add in front. From a folded one (`fold_into_onnx`'s
    uint8 N×H×W×3): its Transpose and Cast are dropped and its Mul reads the float pixels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    image = _only_input(graph, path, "nvinfer's input")
    name = image.name
    dims = image.type.tensor_type.shape.dim
    batch = dims[0].dim_param or dims[0].dim_value or "batch"
    folded = {node.name: node for node in graph.node if node.name in ("edgekit_pixels_nchw", "edgekit_cast")}
    if image.type.tensor_type.elem_type == TensorProto.UINT8 and len(folded) == 2:
        height, width = dims[1].dim_value, dims[2].dim_value
        for node in folded.values():
            graph.node.remove(node)
        for node in graph.node:  # the folded Mul now reads the float pixels directly
            node.input[:] = [name if value == f"{name}__float" else value for value in node.input]
    elif image.type.tensor_type.elem_type == TensorProto.FLOAT and len(dims) == 4 and dims[1].dim_value == 3:
        height, width = dims[2].dim_value, dims[3].dim_value
        inner = f"{name}__normalised"
        for node in graph.node:
            node.input[:] = [inner if value == name else value for value in node.input]
        scale, shift = normalisation_affine(spec)
        graph.initializer.extend(
            [
                numpy_helper.from_array(scale.reshape(1, 3, 1, 1), f"{name}__scale"),
                numpy_helper.from_array(shift.reshape(1, 3, 1, 1), f"{name}__shift"),
            ]
        )
        prefix = [
            helper.make_node("Mul", [name, f"{name}__scale"], [f"{name}__scaled"], name="edgekit_scale"),
            helper.make_node("Add", [f"{name}__scaled", f"{name}__shift"], [inner], name="edgekit_shift"),
        ]
        for node in reversed(prefix):
            graph.node.insert(0, node)
    else:
        raise EdgekitError(f"{path.name}'s input is neither float32 N×3×H×W nor edgekit's folded uint8 pixels")
    graph.input.remove(image)
    graph.input.insert(0, helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, 3, height, width]))
    onnx.checker.check_model(model)
    _replace(path, model.SerializeToString())
