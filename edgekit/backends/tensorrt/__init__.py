"""TensorRT on NVIDIA GPUs (Jetson and desktop): the bundle carries the ONNX file TensorRT builds from.

Precision lives in that file, as TensorRT 10/11 want it: FP16 by converting the graph's types, INT8
by Q/DQ nodes placed and typed as TensorRT's parser accepts (`optimize/qdq_rules.py`). `build` writes
it without TensorRT, so a bundle for a Jetson can be compiled anywhere; the engine is built on the
device by `edgekit build` (`edgekit/engine_build.py`) and recorded in the manifest beside the ONNX.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Backend, BuildRequest, Capabilities, module_available
from edgekit.data.preprocess import PreprocessSpec

MODEL_FILE = "model.onnx"
INSTALL_HINT = (
    "TensorRT comes with JetPack on a Jetson (sudo apt install python3-libnvinfer) and from "
    "`pip install tensorrt` on a desktop GPU; edgekit also needs `pip install cuda-python`"
)


class TensorRTBackend(Backend):
    name = "tensorrt"
    capabilities = Capabilities(
        devices=frozenset({"gpu"}),
        arches=frozenset({"x86_64", "aarch64"}),
        precisions=frozenset({"fp32", "fp16", "int8"}),
        python_module="tensorrt",
        install_hint=INSTALL_HINT,
        builds_without_runtime=True,
    )

    def __init__(
        self, model_path: Path, threads: int, precision: str = "fp32", options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(model_path, threads, precision, options)
        from edgekit.backends.tensorrt.runtime import EngineRunner

        self._runner = EngineRunner(
            model_path,
            trust_host_code=bool(self.options.get("trust_engine_host_code")),
            cuda_graph=bool(self.options.get("cuda_graph")),
        )
        self._preprocessor: Any = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = super().unavailable_reason()
        if reason is None and not module_available("cuda.bindings"):
            return "cuda-python is not installed (pip install cuda-python)"
        return reason

    @classmethod
    def versions(cls) -> dict[str, str]:
        from edgekit.backends.tensorrt.builder import tensorrt_version

        return {"tensorrt": tensorrt_version() or "not installed (engine built on the device)"}

    @classmethod
    def build(cls, fp32_onnx: Path, out_dir: Path, request: BuildRequest) -> tuple[str, dict[str, object]]:
        """Write the ONNX file TensorRT builds from, in the requested precision (no TensorRT needed)."""
        target = out_dir / MODEL_FILE
        if request.precision == "fp32":
            shutil.copyfile(fp32_onnx, target)
            return MODEL_FILE, {}
        from edgekit.optimize.qdq_rules import check_file
        from edgekit.optimize.quantize import quantize_int8, to_fp16

        if request.precision == "fp16":
            to_fp16(fp32_onnx, target)
            return MODEL_FILE, {"converter": "onnxconverter-common float16 (inputs/outputs kept float32)"}
        if request.calibration is None:
            raise ValueError("INT8 needs calibration inputs")
        with contextlib.redirect_stdout(sys.stderr):  # the quantizer prints; stdout belongs to --json
            quantize_int8(fp32_onnx, target, request.calibration, "tensorrt", request.method, request.keep_fp32)
        violations = check_file(target)
        if violations:  # our quantizer broke a rule TensorRT's parser enforces: a bug, keep the traceback
            raise RuntimeError("tensorrt placement broke TensorRT rules: " + "; ".join(map(str, violations[:5])))
        return MODEL_FILE, {
            "quantizer": "onnxruntime.quantization.quantize_static (QDQ, tensorrt placement)",
            "method": request.method,
            "calibration_images": len(request.calibration),
            "tensorrt_qdq_rules": "all met (edgekit/optimize/qdq_rules.py)",
        }

    @classmethod
    def model_file(cls, bundle: Path, manifest: dict[str, Any], options: Mapping[str, Any]) -> Path:
        """The engine built for this TensorRT and this GPU; refuses (with the rebuild command) otherwise."""
        from edgekit.backends.tensorrt import device
        from edgekit.backends.tensorrt.builder import tensorrt_version
        from edgekit.backends.tensorrt.engines import select_engine

        record = select_engine(bundle, manifest, tensorrt_version() or "", device.probe(), options.get("dla_core"))
        if record.get("version_compatible") and not options.get("trust_engine_host_code"):
            from edgekit.errors import EdgekitError

            raise EdgekitError(
                f"{record['file']} is a version-compatible plan, which runs host code stored in the plan; "
                "load it only if you trust its origin, with --trust-engine-host-code"
            )
        return bundle / record["file"]

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._runner.run(batch)

    def run_images(self, images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray | None:
        """Decoded RGB images, preprocessed on the GPU by the bundle's fused kernel, then the network."""
        if self._preprocessor is None or self._preprocessor.spec != spec:
            from edgekit.kernels.bundle import load_cubins
            from edgekit.kernels.launch import CudaPreprocessor

            # Engines live in <bundle>/engines/: the bundle's kernels are beside them.
            bundle = self.model_path.parent.parent
            self._preprocessor = CudaPreprocessor(spec, binaries=load_cubins(bundle) or None)
        return self._runner.run_frames(list(images), self._preprocessor)

    def stage_ms(self) -> dict[str, float]:
        times = self._runner.times
        return {
            "upload_ms": times.upload_ms,
            "preprocess_ms": times.preprocess_ms,
            "network_ms": times.network_ms,
            "download_ms": times.download_ms,
        }

    def device_ms(self) -> float | None:
        return self._runner.times.network_ms
