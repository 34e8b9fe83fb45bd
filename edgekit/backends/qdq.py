"""INT8 and FP16 ONNX files, with precision carried by the file itself (TensorRT 11 has no flags).

INT8 uses onnxruntime's static QDQ quantizer with calibration images. Where the Q/DQ nodes go
depends on who runs the file (measured on these CPUs, see shared/DESIGN.md):

- `cpu`: ONNX Runtime's own placement, unsigned asymmetric activations, per-channel INT8 weights
  stored as INT8 initializers. ORT fuses it into integer kernels (the fast CPU path).
- `tensorrt`: what TensorRT's explicit quantization accepts and fuses — see `qdq_rules.py`, which
  checks every file this writes: signed symmetric INT8 with zero point 0, per-channel weight scales
  on the output-channel axis, per-tensor activation scales, Q/DQ at the inputs of Conv/Gemm, float
  biases (no INT32 DequantizeLinear), one shared scale for all quantized inputs of a Concat.

FP16 converts the graph's types (inputs/outputs stay FP32 with casts at the edges; Softmax stays
FP32) — the file TensorRT ≥ 10 builds strongly typed.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from edgekit.backends.placements import PLACEMENTS
from edgekit.core.errors import EdgekitError
from edgekit.core.layer_groups import group_of

METHODS = ("minmax", "percentile", "entropy")  # the default first, then the other rungs of the guard, cheapest first


class QdqQuantizerHooks:
    """The Converter hooks of a backend whose INT8 file is made by `quantize_int8` (ONNX Runtime's Q/DQ
    quantizer): its calibration methods, and layer groups kept in FP32 through `nodes_to_exclude`."""

    @classmethod
    def calibration_methods(cls, precision: str) -> tuple[str, ...]:
        return METHODS if precision == "int8" else ()

    @classmethod
    def keeps_layer_groups(cls, precision: str) -> bool:
        return precision == "int8"


def nodes_in_groups(model_path: Path, groups: Iterable[str]) -> list[str]:
    import onnx

    wanted = set(groups)
    return [n.name for n in onnx.load(str(model_path)).graph.node if group_of(n.name) in wanted]


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over a preprocessed batch, one image per call."""

    def __init__(self, input_name: str, inputs: np.ndarray) -> None:
        self._input_name = input_name
        self._inputs = inputs
        self._index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._index >= len(self._inputs):
            return None
        self._index += 1
        return {self._input_name: self._inputs[self._index - 1 : self._index]}

    def rewind(self) -> None:
        self._index = 0


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer prints its histogram progress with print(): stdout belongs to --json, and those lines
    say nothing a user can act on."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def quantize_int8(
    fp32: Path,
    out: Path,
    calibration: np.ndarray,
    placement: str = "cpu",
    method: str = "minmax",
    keep_fp32: tuple[str, ...] = (),
) -> None:
    """Static INT8 Q/DQ quantization of `fp32` into `out`; `keep_fp32` layer groups stay float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if placement not in PLACEMENTS or method not in METHODS:
        raise EdgekitError(f"placement must be one of {PLACEMENTS} and method one of {METHODS}")
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    model = onnx.load(str(fp32))
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory() as work:
        source = fp32
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < 13:
            # Per-channel DequantizeLinear needs its `axis` attribute, which exists from opset 13; the
            # quantizer does not upgrade older files (someone else's opset-11 export) by itself.
            from onnx import version_converter

            source = Path(work) / "opset13.onnx"
            onnx.save(version_converter.convert_version(model, 13), str(source))
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        common = {
            "quant_format": QuantFormat.QDQ,
            "per_channel": True,
            "weight_type": QuantType.QInt8,
            "calibrate_method": calibrate,
            "nodes_to_exclude": nodes_in_groups(prepared, keep_fp32),
        }
        reader = _CalibrationReader(input_name, calibration)
        if placement == "cpu":
            with _quiet_quantizer():
                quantize_static(str(prepared), str(out), reader, activation_type=QuantType.QUInt8, **common)
            return
        from edgekit.backends.qdq_rules import residual_adds

        # TensorRT's placement: the inputs of every Conv/Gemm and pooling, and both inputs of every residual
        # Add (its output left to the next layer's input), so TensorRT fuses each Add into its Conv in INT8.
        prepared_model = onnx.load(str(prepared))
        residual = set(residual_adds(prepared_model))
        other_adds = [n.name for n in prepared_model.graph.node if n.op_type == "Add" and n.name not in residual]
        common["nodes_to_exclude"] = [*common["nodes_to_exclude"], *other_adds]
        with _quiet_quantizer():
            quantize_static(
                str(prepared),
                str(out),
                reader,
                activation_type=QuantType.QInt8,
                op_types_to_quantize=["Conv", "Gemm", "MaxPool", "AveragePool", "Add"],
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,
                    "OpTypesToExcludeOutputQuantization": ["Add"],
                },
                **common,
            )
    from edgekit.backends.qdq_rules import share_concat_scales

    share_concat_scales(out)


def to_fp16(fp32: Path, out: Path) -> None:
    """A typed FP16 graph with FP32 inputs/outputs and Softmax kept in FP32."""
    import warnings

    import onnx
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        # One warning per tiny weight clamped to FP16's smallest normal: dozens of lines saying nothing actionable.
        warnings.filterwarnings("ignore", message=r"the float32 number .* will be truncated")
        model = float16.convert_float_to_float16(
            onnx.load(str(fp32)),
            keep_io_types=True,
            op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, "Softmax", "LogSoftmax"],
        )
    onnx.save(model, str(out))
