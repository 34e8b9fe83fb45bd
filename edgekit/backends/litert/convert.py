"""LiteRT's convert half: ONNX → PyTorch (onnx_to_torch.py) → litert-torch → .tflite, and ai-edge-quantizer's
full-integer INT8. See run.py for why this route and how the files run."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Converter, ConvertRequest
from edgekit.backends.litert.run import (
    INSTALL_CONVERTER,
    MODEL_FILE,
    LiteRtBackend,
    _quiet,
    load_interpreter,
    uses_delegate,
)
from edgekit.core.errors import EdgekitError
from edgekit.core.versions import module_available

CONVERTER_MODULES = ("litert_torch", "ai_edge_quantizer")


def converter_missing() -> str | None:
    """Why .tflite files cannot be made here (with the install command), or None."""
    missing = [m for m in CONVERTER_MODULES if not module_available(m)]
    if not missing:
        return None
    names = " and ".join(m.replace("_", "-") for m in missing)
    return f"the litert backend converts with litert-torch and ai-edge-quantizer ({names} missing): {INSTALL_CONVERTER}"


class LiteRtConverter(Converter):
    backend = LiteRtBackend

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why models cannot be converted here, or the converted file not checked in the interpreter."""
        return converter_missing() or cls.backend.unavailable_reason()

    @classmethod
    def calibration_methods(cls, precision: str) -> tuple[str, ...]:
        return ("minmax",) if precision == "int8" else ()

    @classmethod
    def convert(cls, fp32_onnx: Path, out_dir: Path, request: ConvertRequest) -> tuple[str, dict[str, object]]:
        reason = converter_missing()
        if reason:
            raise EdgekitError(reason)
        if request.precision not in cls.backend.capabilities.precisions:
            raise EdgekitError(f"the litert backend builds fp32 and int8, not {request.precision}")
        if request.precision == "int8":
            if request.calibration is None:
                raise ValueError("INT8 needs calibration inputs")
            if request.method not in (None, "minmax"):
                raise EdgekitError(f"the litert backend calibrates with min/max only, not {request.method}")
            if request.keep_fp32:
                # ai-edge-quantizer picks layers by output-tensor name; litert-torch's fused names mix
                # layer groups and leave the classifier's output unnamed, so a per-group fallback would guess.
                raise EdgekitError(
                    "the litert backend's INT8 is full integer and cannot keep layer groups in FP32; the accuracy "
                    "guard moves to the target's other INT8 backend for that"
                )
        started = time.perf_counter()
        float_model = convert_fp32(fp32_onnx)
        if request.precision == "fp32":
            (out_dir / MODEL_FILE).write_bytes(float_model)
            return MODEL_FILE, {"converter": _converter_name(), "convert_s": round(time.perf_counter() - started, 1)}
        assert request.calibration is not None
        quantized = quantize_int8(float_model, request.calibration, request.int8_io)
        (out_dir / MODEL_FILE).write_bytes(quantized)
        interpreter = load_interpreter(quantized, 1)
        return MODEL_FILE, {
            "quantizer": (
                f"ai-edge-quantizer {importlib.metadata.version('ai-edge-quantizer')}: full integer, int8 "
                "per-channel weights, int8 per-tensor activations (16-bit at the classifier layer), "
                f"{request.int8_io} input/output, "
                "min/max over all calibration images"
            ),
            "converter": _converter_name(),
            "calibration_images": len(request.calibration),
            "tflite_input": _interface(interpreter.get_input_details()[0]),
            "tflite_output": _interface(interpreter.get_output_details()[0]),
            "xnnpack": uses_delegate(interpreter),
            "convert_s": round(time.perf_counter() - started, 1),
        }


def _converter_name() -> str:
    return f"litert-torch {importlib.metadata.version('litert-torch')} (ONNX → PyTorch → torch.export → TFLite)"


def _interface(detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = detail["quantization"]
    record: dict[str, Any] = {"shape": [int(d) for d in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name}
    if scale:
        record.update(scale=float(scale), zero_point=int(zero_point))
    return record


def _static_input_shape(fp32_onnx: Path) -> list[int]:
    import onnx

    graph = onnx.load(str(fp32_onnx), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    image = next(i for i in graph.input if i.name not in initializers)
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in image.type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims[1:]):
        raise EdgekitError(f"{fp32_onnx}: the litert backend needs a fixed N×C×H×W input, not {dims}")
    return [1, *dims[1:]]  # the .tflite file has batch 1; `run` loops over a batch


def convert_fp32(fp32_onnx: Path) -> bytes:
    """The FP32 .tflite flatbuffer of an ONNX classifier."""
    import torch

    from edgekit.backends.litert.onnx_to_torch import onnx_to_torch

    module = onnx_to_torch(fp32_onnx)
    example = torch.zeros(_static_input_shape(fp32_onnx))
    with _quiet():
        import litert_torch

        with torch.no_grad():
            edge_model = litert_torch.convert(module, (example,))
        with tempfile.TemporaryDirectory() as work:
            path = Path(work) / MODEL_FILE
            edge_model.export(str(path))
            return path.read_bytes()


def quantize_int8(float_model: bytes, calibration: np.ndarray, io: str = "float32") -> bytes:
    """Full-integer INT8 of an FP32 .tflite file, calibrated on preprocessed NCHW images.

    The classifier layer keeps int8 weights but 16-bit activations, so the output is int16: on the
    int8 grid (a step of ~0.08 for logits spanning ±10) near-equal logits became ties, which made 15
    of the 17 top-1 disagreements with FP32 on 1,050 test images; 16-bit logits cut them to 11 for
    0.1 ms per image.
    """
    with _quiet():
        from ai_edge_quantizer import calibrator, qtyping, quantizer, recipe, recipe_manager
        from ai_edge_quantizer.utils import qsv_utils

        manager = recipe_manager.RecipeManager()
        if io == "int8":
            manager.load_quantization_recipe(recipe.static_wi8_ai8())
            for op in (qtyping.TFLOperationName.FULLY_CONNECTED, qtyping.TFLOperationName.OUTPUT):
                manager.add_static_config(".*", op, activation_num_bits=16, weight_num_bits=8)
        else:
            # Every op but the graph's INPUT/OUTPUT: the quantizer then inserts QUANTIZE after the float
            # input and DEQUANTIZE before the float output, the usual TFLite float interface.
            for op in qtyping.TFLOperationName:
                if op.name in ("ALL_SUPPORTED", "INPUT", "OUTPUT"):
                    continue
                bits = 16 if op == qtyping.TFLOperationName.FULLY_CONNECTED else 8
                with contextlib.suppress(ValueError):  # an op the int8 policy does not cover stays float
                    manager.add_static_config(".*", op, activation_num_bits=bits, weight_num_bits=8)
        qt = quantizer.Quantizer(float_model, manager.get_quantization_recipe())
        interpreter = load_interpreter(float_model, 1)
        signature, names = next(iter(interpreter.get_signature_list().items()))
        samples = [{names["inputs"][0]: calibration[i : i + 1]} for i in range(len(calibration))]
        # Quantizer.calibrate has no choice of update rule; the Calibrator it wraps takes one. Min/max
        # over all images is what keeps the logits unclipped (see the module docstring).
        with warnings.catch_warnings():  # calibration keeps every tensor on purpose; LiteRT warns it is for debugging
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors", category=UserWarning)
            calibration_run = calibrator.Calibrator(
                float_model, num_threads=os.cpu_count() or 1, qsv_update_func=qsv_utils.min_max_update
            )
            calibration_run.calibrate({signature: samples}, qt._recipe_manager)
            result = qt.quantize(calibration_run.get_model_qsvs(), enable_progress_bar=False)
        return bytes(result.quantized_model)
