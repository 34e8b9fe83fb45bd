"""`edgekit quantize` as a library call: ONNX in, INT8/FP16 ONNX out, written atomically."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import EdgekitError
from edgekit.core.files import atomic_path, writable_directory_problem
from edgekit.core.progress import QUIET, Progress
from edgekit.data.preprocess import PreprocessSpec
from edgekit.export.onnx_file import OnnxInfo, inspect_onnx


@dataclasses.dataclass(frozen=True)
class QuantizeRequest:
    model: Path
    out: Path
    precision: str
    calib: Path | None = None
    calib_size: int = 256
    method: str | None = None  # None: ONNX Runtime's minmax
    placement: str = "cpu"
    resize: int | None = None
    crop: int | None = None
    force: bool = False


def quantize_file(request: QuantizeRequest, progress: Progress = QUIET) -> dict[str, Any]:
    from edgekit.backends.placements import RULE_CHECKED_PLACEMENTS
    from edgekit.backends.qdq import METHODS, quantize_int8, to_fp16
    from edgekit.backends.qdq_rules import check_file
    from edgekit.data.calibration import calibration_inputs

    if request.method is not None and request.method not in METHODS:
        raise EdgekitError(
            f"quantize writes ONNX Runtime Q/DQ files: --method {request.method} is OpenVINO's NNCF (use it in "
            f"`edgekit compile --backend openvino`); here choose one of {', '.join(METHODS)}"
        )
    method = request.method or "minmax"
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
            images = calibration_inputs(request.calib, spec, request.calib_size, progress=progress)
            for warning in images.warnings:
                progress.note(f"warning: {warning}")
            assert images.inputs is not None
            quantize_int8(request.model, tmp, images.inputs, request.placement, method)
            result.update(placement=request.placement, method=method, calibration_images=len(images.inputs))
            if images.held_out is not None:
                result["guard"] = _guard(request.model, tmp, info, images.held_out, progress)
            if request.placement in RULE_CHECKED_PLACEMENTS:
                violations = check_file(tmp)
                if violations:  # our quantizer broke a rule: a bug, keep the traceback
                    raise RuntimeError(
                        f"{request.placement} placement broke its rules: " + "; ".join(map(str, violations[:5]))
                    )
                result["placement_rules"] = "all met"
    result.update(size_bytes=request.out.stat().st_size, fp32_size_bytes=request.model.stat().st_size)
    return result


def _guard(fp32: Path, int8: Path, info: OnnxInfo, held_out: np.ndarray, progress: Progress) -> dict[str, Any]:
    """The INT8 file against the FP32 one on the held-out images, both in ONNX Runtime (a Q/DQ file of
    either placement runs there)."""
    from edgekit.measure.reference import OnnxReference
    from edgekit.measure.stats import Agreement

    outputs = [OnnxReference(path, 0, info.output_kind, info.batch).run(held_out) for path in (fp32, int8)]
    agreement = Agreement.of(*outputs)
    progress.note(f"INT8 vs FP32 on {agreement.n} held-out images: {agreement.describe()}")
    return agreement.to_dict()
