"""LiteRT (TFLite) on ARM CPUs without an NVIDIA GPU: `.tflite` files run by the LiteRT interpreter.

Conversion needs no TensorFlow: the FP32 ONNX export every backend builds from is rebuilt as a
PyTorch module (`edgekit.export.onnx_to_torch`), which litert-torch lowers through torch.export and
StableHLO to TFLite. INT8 is full integer: ai-edge-quantizer quantizes that FP32 file with the
calibration images (int8 per-channel symmetric weights, int8 per-tensor asymmetric activations; 16-bit
at the classifier layer, see `quantize_int8`; a float32 or int8 interface as the target's `int8_io`
says), with activation ranges the min/max over
all images — its default moving average lets the last few images decide the ranges and clipped the
logits (95 % top-1 agreement with FP32 instead of 98 % on the test model). Chosen 2026-11-26 over
onnx2tf + TensorFlow's converter, which reached the same agreement but took 72 s against 20 s for
FP32 + INT8, needs TensorFlow (2.3 GB installed against 1.1 GB) and pins numpy, onnx and
onnxruntime below edgekit's.

The runtime is `ai_edge_litert`'s Interpreter, or `tflite_runtime`'s where only that is installed
(older boards), with the target's thread count and the XNNPACK delegate (their default). The files
take NCHW like every other backend's (litert-torch keeps PyTorch's layout and transposes inside, which
measured faster than an NHWC interface); the batch is fixed at 1 and `run` loops over a batch.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Backend, BuildRequest, Capabilities, module_available
from edgekit.errors import EdgekitError

MODEL_FILE = "model.tflite"
CONVERTER_MODULES = ("litert_torch", "ai_edge_quantizer")
INSTALL_CONVERTER = "pip install -c constraints.txt -e '.[litert]'"
_RUNTIMES = (("ai_edge_litert", "ai_edge_litert.interpreter"), ("tflite_runtime", "tflite_runtime.interpreter"))
_DISTRIBUTIONS = ("ai-edge-litert", "tflite-runtime", "litert-torch", "litert-converter", "ai-edge-quantizer")


def converter_missing() -> str | None:
    """Why .tflite files cannot be made here (with the install command), or None."""
    missing = [m for m in CONVERTER_MODULES if not module_available(m)]
    if not missing:
        return None
    names = " and ".join(m.replace("_", "-") for m in missing)
    return f"the litert backend converts with litert-torch and ai-edge-quantizer ({names} missing): {INSTALL_CONVERTER}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow what the converter and interpreter print (progress tables, C++ INFO lines) at the file
    descriptor level, where Python's redirects do not reach: stdout carries `--json` output. On an
    error the captured text goes to stderr, as the context of the exception."""
    with tempfile.TemporaryFile() as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        except BaseException:
            sink.seek(0)
            captured = sink.read().decode(errors="replace")[-4000:]
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            if captured.strip():
                print(captured, file=sys.stderr)
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def load_interpreter(model: Path | bytes, threads: int) -> Any:
    """An allocated LiteRT interpreter: ai-edge-litert's, else tflite-runtime's; XNNPACK on (their default)."""
    for package, module in _RUNTIMES:
        if module_available(package):
            interpreter_cls = importlib.import_module(module).Interpreter
            break
    else:
        raise EdgekitError("no LiteRT runtime is installed: pip install ai-edge-litert (or tflite-runtime)")
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    with _quiet():
        interpreter = interpreter_cls(**source, num_threads=max(1, threads))
        interpreter.allocate_tensors()
    return interpreter


def uses_delegate(interpreter: Any) -> bool:
    """Whether a delegate (XNNPACK, the CPU default) took over the graph: it shows as a DELEGATE op."""
    try:
        return any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    except AttributeError:  # a runtime without the op listing
        return False


class LiteRtBackend(Backend):
    name = "litert"
    capabilities = Capabilities(
        devices=frozenset({"cpu"}),
        arches=frozenset({"aarch64", "x86_64"}),
        precisions=frozenset({"fp32", "int8"}),
        python_module="ai_edge_litert",
        install_hint="pip install ai-edge-litert, or tflite-runtime; to convert models: " + INSTALL_CONVERTER,
    )

    def __init__(
        self, model_path: Path, threads: int, precision: str = "fp32", options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(model_path, threads, precision, options)
        if model_path.suffix != ".tflite":
            raise EdgekitError(
                f"{model_path.name} is not a .tflite file: the litert backend runs bundles compiled for it "
                "(--target arm-cpu or --backend litert)"
            )
        self._interpreter = load_interpreter(model_path, threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.xnnpack = uses_delegate(self._interpreter)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if any(module_available(package) for package, _ in _RUNTIMES):
            return None
        return f"{cls.name} is not installed ({cls.capabilities.install_hint})"

    @classmethod
    def build_unavailable_reason(cls) -> str | None:
        """Why models cannot be converted here, or the converted file not checked in the interpreter."""
        return converter_missing() or cls.unavailable_reason()

    @classmethod
    def versions(cls) -> dict[str, str]:
        versions = {}
        for name in _DISTRIBUTIONS:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[name] = importlib.metadata.version(name)
        return versions

    @classmethod
    def build(cls, fp32_onnx: Path, out_dir: Path, request: BuildRequest) -> tuple[str, dict[str, object]]:
        reason = converter_missing()
        if reason:
            raise EdgekitError(reason)
        if request.precision not in cls.capabilities.precisions:
            raise EdgekitError(f"the litert backend builds fp32 and int8, not {request.precision}")
        if request.precision == "int8":
            if request.calibration is None:
                raise ValueError("INT8 needs calibration inputs")
            if request.method != "minmax":
                raise EdgekitError(f"the litert backend calibrates with min/max only, not {request.method}")
            if request.keep_fp32:
                # ai-edge-quantizer picks layers by output-tensor name; litert-torch's fused names mix
                # layer groups and leave the classifier's output unnamed, so a per-group fallback would guess.
                raise EdgekitError(
                    "the litert backend's INT8 is full integer and cannot keep layer groups in FP32 to meet "
                    "--max-accuracy-drop; compile with --backend onnxruntime for that fallback"
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

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The dequantized first output for a float32 NCHW batch, one image per invoke (batch fixed at 1)."""
        detail, out = self._input, self._output
        results = []
        for image in batch:
            tensor = _quantize(image[None], detail)
            self._interpreter.set_tensor(detail["index"], tensor)
            self._interpreter.invoke()
            results.append(_dequantize(self._interpreter.get_tensor(out["index"]), out))
        return np.concatenate(results) if results else np.zeros((0, *out["shape"][1:]), np.float32)


def _converter_name() -> str:
    return f"litert-torch {importlib.metadata.version('litert-torch')} (ONNX → PyTorch → torch.export → TFLite)"


def _interface(detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = detail["quantization"]
    record: dict[str, Any] = {"shape": [int(d) for d in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name}
    if scale:
        record.update(scale=float(scale), zero_point=int(zero_point))
    return record


def _quantize(batch: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float input as the model takes it: unchanged for a float model, scaled and rounded for int8/uint8."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return batch.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(batch / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind == "f":
        return values.astype(np.float32, copy=True)
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float32) - zero_point) * np.float32(scale)


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

    from edgekit.export.onnx_to_torch import onnx_to_torch

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
