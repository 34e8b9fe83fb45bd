"""`edgekit quantize` as a library call: ONNX in, INT8/FP16 ONNX out, written atomically."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.core.files import atomic_path, writable_directory_problem
from edgekit.core.progress import QUIET, Progress
from edgekit.data.preprocess import PreprocessSpec
from edgekit.export.onnx_file import inspect_onnx


@dataclasses.dataclass(frozen=True)
class QuantizeRequest:
    model: Path
    out: Path
    precision: str
    calib: Path | None = None
    calib_size: int = 256
    method: str = "minmax"
    placement: str = "cpu"
    resize: int | None = None
    crop: int | None = None
    force: bool = False


def quantize_file(request: QuantizeRequest, progress: Progress = QUIET) -> dict[str, Any]:
    import contextlib
    import sys

    from edgekit.backends.qdq import RULE_CHECKED_PLACEMENTS, quantize_int8, to_fp16
    from edgekit.backends.qdq_rules import check_file
    from edgekit.data.calibration import calibration_inputs

    info = inspect_onnx(request.model)
    if request.precision == "int8" and request.calib is None:
        raise EdgekitError("--precision int8 needs --calib DIR (calibration images, labels not needed)")
    if request.out.exists() and not request.force:
        raise EdgekitError(f"{request.out} already exists; pass --force to replace it")
    problem = writable_directory_problem(request.out.parent, must_exist=True)
    if problem:
        raise EdgekitError(f"cannot write {request.out}: {problem}")
    crop = request.crop or info.height or 224
    spec = PreprocessSpec(resize=request.resize or round(crop * 256 / 224), crop=crop)
    result: dict[str, Any] = {"out": str(request.out), "precision": request.precision}
    with atomic_path(request.out, suffix=".onnx") as tmp:
        if request.precision == "fp16":
            to_fp16(request.model, tmp)
        else:
            assert request.calib is not None
            calibration, warnings = calibration_inputs(request.calib, spec, request.calib_size, progress=progress)
            for warning in warnings:
                progress.note(f"warning: {warning}")
            with contextlib.redirect_stdout(sys.stderr):
                quantize_int8(request.model, tmp, calibration, request.placement, request.method)
            result.update(placement=request.placement, method=request.method, calibration_images=len(calibration))
            if request.placement in RULE_CHECKED_PLACEMENTS:
                violations = check_file(tmp)
                if violations:  # our quantizer broke a rule: a bug, keep the traceback
                    raise RuntimeError(
                        "tensorrt placement broke TensorRT rules: " + "; ".join(map(str, violations[:5]))
                    )
                result["tensorrt_rules"] = "all met"
    result.update(size_bytes=request.out.stat().st_size, fp32_size_bytes=request.model.stat().st_size)
    return result
