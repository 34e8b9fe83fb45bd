"""TensorRT's convert half: the ONNX file TensorRT builds from, in the bundle's precision, written without
TensorRT; and the hooks that add the kernels and the engine (bundle_engines.py) to a bundle.

Precision lives in that file, as TensorRT 10/11 want it: FP16 by converting the graph's types, INT8
by Q/DQ nodes placed and typed as TensorRT's parser accepts (`qdq_rules.py`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgekit.backends.base import Converter, ConvertRequest, DeviceModelCheck, Samples
from edgekit.backends.qdq import QdqQuantizerHooks
from edgekit.backends.tensorrt.recipe import BuildOptions, check_for_target
from edgekit.backends.tensorrt.run import TensorRTBackend
from edgekit.core.progress import Progress
from edgekit.targets import Target

MODEL_FILE = "model.onnx"


class TensorRTConverter(QdqQuantizerHooks, Converter):
    backend = TensorRTBackend

    @classmethod
    def convert(cls, fp32_onnx: Path, out_dir: Path, request: ConvertRequest) -> tuple[str, dict[str, object]]:
        """Write the ONNX file TensorRT builds from, in the requested precision (no TensorRT needed)."""
        target = out_dir / MODEL_FILE
        if request.precision == "fp32":
            shutil.copyfile(fp32_onnx, target)
            return MODEL_FILE, {}
        from edgekit.backends.qdq import quantize_int8, to_fp16
        from edgekit.backends.qdq_rules import check_file

        if request.precision == "fp16":
            to_fp16(fp32_onnx, target)
            return MODEL_FILE, {"converter": "onnxconverter-common float16 (inputs/outputs kept float32)"}
        if request.calibration is None:
            raise ValueError("INT8 needs calibration inputs")
        method = request.method or cls.calibration_methods("int8")[0]
        quantize_int8(fp32_onnx, target, request.calibration, "tensorrt", method, request.keep_fp32)
        violations = check_file(target, request.keep_fp32)
        if violations:  # our quantizer broke a rule TensorRT's parser enforces: a bug, keep the traceback
            raise RuntimeError("tensorrt placement broke TensorRT rules: " + "; ".join(map(str, violations[:5])))
        return MODEL_FILE, {
            "quantizer": "onnxruntime.quantization.quantize_static (QDQ, tensorrt placement)",
            "method": method,
            "calibration_images": len(request.calibration),
            "tensorrt_qdq_rules": "all met (edgekit/backends/qdq_rules.py)"
            + (f"; kept in float (FP16/FP32 in TensorRT): {', '.join(request.keep_fp32)}" if request.keep_fp32 else ""),
        }

    @classmethod
    def check_options(cls, target: Target, precision: str, options: BuildOptions | None) -> None:
        if options is not None and options != BuildOptions():
            check_for_target(target, precision, options)

    @classmethod
    def finish_bundle(
        cls,
        stage: Path,
        manifest: dict[str, Any],
        target: Target,
        out: Path,
        options: BuildOptions | None,
        check: DeviceModelCheck,
        progress: Progress,
        samples: Samples | None = None,
    ) -> dict[str, Any]:
        from edgekit.backends.tensorrt.bundle_engines import finish_gpu_bundle

        return finish_gpu_bundle(stage, manifest, target, out, options, check, progress, samples)
