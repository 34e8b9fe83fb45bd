"""LiteRT (TFLite) on ARM CPUs without an NVIDIA GPU: `.tflite` files run by the LiteRT interpreter.

Conversion needs no TensorFlow: the FP32 ONNX export every backend builds from is rebuilt as a
PyTorch module (`edgekit.backends.litert.onnx_to_torch`), which litert-torch lowers through torch.export and
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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Backend, Capabilities, ModelFiles, unloadable
from edgekit.core.errors import EdgekitError
from edgekit.core.pool import Pool
from edgekit.core.versions import module_available

MODEL_FILE = "model.tflite"
INSTALL_CONVERTER = "pip install -c constraints.txt -e '.[litert]'"
_RUNTIMES = (("ai_edge_litert", "ai_edge_litert.interpreter"), ("tflite_runtime", "tflite_runtime.interpreter"))
_DISTRIBUTIONS = ("ai-edge-litert", "tflite-runtime", "litert-torch", "litert-converter", "ai-edge-quantizer")


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
        self, model: ModelFiles, threads: int, precision: str = "fp32", options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(model, threads, precision, options)
        if not model.main.endswith(".tflite"):
            raise EdgekitError(
                f"{model.main} is not a .tflite file: the litert backend runs bundles compiled for it "
                "(--target arm-cpu or --backend litert)"
            )
        # An interpreter is not thread-safe (its tensors are shared state): each call takes one of its own.
        self._interpreters = Pool(self._load, limit=min(8, os.cpu_count() or 1))
        with self._interpreters.take() as interpreter:
            self._input = interpreter.get_input_details()[0]
            self._output = interpreter.get_output_details()[0]
            self.xnnpack = uses_delegate(interpreter)

    def _load(self) -> Any:
        try:
            return load_interpreter(self.model.data, self.threads)
        except (ValueError, RuntimeError) as exc:  # what the interpreter raises for a file it cannot read
            raise unloadable(self.model, "litert", exc) from None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if any(module_available(package) for package, _ in _RUNTIMES):
            return None
        return f"{cls.name} is not installed ({cls.capabilities.install_hint})"

    @classmethod
    def versions(cls) -> dict[str, str]:
        versions = {}
        for name in _DISTRIBUTIONS:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[name] = importlib.metadata.version(name)
        return versions

    @classmethod
    def input_errors(cls) -> tuple[type[BaseException], ...]:
        return (ValueError,)  # set_tensor: "Cannot set tensor: Dimension mismatch"

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The dequantized first output for a float32 NCHW batch, one image per invoke (batch fixed at 1)."""
        detail, out = self._input, self._output
        results = []
        with self._interpreters.take() as interpreter:
            for image in batch:
                interpreter.set_tensor(detail["index"], _quantize(image[None], detail))
                interpreter.invoke()
                results.append(_dequantize(interpreter.get_tensor(out["index"]), out))
        return np.concatenate(results) if results else np.zeros((0, *out["shape"][1:]), np.float32)


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
