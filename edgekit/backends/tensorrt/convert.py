"""TensorRT's convert half: the ONNX file TensorRT builds from, in the bundle's precision, written without
TensorRT; and the hooks that add the kernels and the engine (engine.py) to a bundle.

Precision lives in that file, as TensorRT 10/11 want it: FP16 by converting the graph's types, INT8
by Q/DQ nodes placed and typed as TensorRT's parser accepts (`qdq_rules.py`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.backends.base import Converter, ConvertRequest, DeviceModelCheck, Samples
from edgekit.backends.qdq import QdqQuantizerHooks
from edgekit.backends.tensorrt.recipe import BuildOptions, check_for_target
from edgekit.backends.tensorrt.run import TensorRTBackend
from edgekit.core.errors import EdgekitError
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
    def parse_options(cls, values: Mapping[str, Any]) -> BuildOptions | None:
        """Engine options from the values given (None: not given); unknown names are a bug in the caller."""
        given = {name: value for name, value in values.items() if value is not None}
        return BuildOptions(**given) if given else None

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
        from edgekit.backends.tensorrt.engine import finish_gpu_bundle

        return finish_gpu_bundle(stage, manifest, target, out, options, check, progress, samples)

    @classmethod
    def build_on_device(
        cls,
        stage: Path,
        manifest: dict[str, Any],
        options: BuildOptions | None,
        settings: Mapping[str, Any],
        check: DeviceModelCheck,
        progress: Progress,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A new engine for this GPU; without options, those recorded at compile time."""
        from edgekit.backends.tensorrt.engine import EngineSettings, add_engine

        if options is None:
            options = BuildOptions.from_dict((manifest.get("tensorrt") or {}).get("options") or {})
        updated = add_engine(stage, manifest, options, EngineSettings(**settings), check, progress)
        return updated, updated["tensorrt"]["engines"][-1]

    @classmethod
    def native_build_command(
        cls, manifest: dict[str, Any], bundle: Path, options: BuildOptions | None, version: str | None
    ) -> str:
        """The trtexec command for TensorRT `version` (default: the oldest the target's device can have)."""
        from edgekit.backends.tensorrt.engine import trtexec_build
        from edgekit.backends.tensorrt.trtexec import shell_line
        from edgekit.targets import target_from_record

        target = target_from_record(manifest["target"])
        assert target.gpu is not None  # a TensorRT bundle's target is a GPU target
        if version is not None and not target.gpu.tensorrt.admits(version):
            raise EdgekitError(f"{target.name}'s device has TensorRT {target.gpu.tensorrt}, not {version}")
        if options is None:
            options = BuildOptions.from_dict((manifest.get("tensorrt") or {}).get("options") or {})
        return f"cd {shell_line([str(bundle)])} && " + shell_line(
            trtexec_build(manifest, target, options, version or target.gpu.tensorrt.min)
        )

    @classmethod
    def check_build_on_device(cls, manifest: dict[str, Any], bundle: Path) -> None:
        from edgekit.backends.tensorrt.engine import check_device

        check_device(manifest, bundle)
