"""OpenVINO's convert half: FP32/FP16 ship the ONNX export (FP16 is a runtime hint); INT8 is NNCF's
post-training quantization, saved as OpenVINO IR."""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

from edgekit.backends.base import Converter, ConvertRequest
from edgekit.backends.openvino.run import OpenVinoBackend


class OpenVinoConverter(Converter):
    backend = OpenVinoBackend

    @classmethod
    def versions(cls) -> dict[str, str]:
        versions = cls.backend.versions()
        with contextlib.suppress(ImportError):
            import nncf

            versions["nncf"] = nncf.__version__
        return versions

    @classmethod
    def convert(cls, fp32_onnx: Path, out_dir: Path, request: ConvertRequest) -> tuple[str, dict[str, object]]:
        if request.precision != "int8":
            shutil.copyfile(fp32_onnx, out_dir / "model.onnx")
            return "model.onnx", {}
        import logging

        # nncf imports torch, whose C++-extension helper warns about CUDA on CPU-only hosts.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        import nncf
        import openvino as ov

        if request.calibration is None:
            raise ValueError("INT8 needs calibration inputs")
        model = ov.Core().read_model(str(fp32_onnx))
        samples = [request.calibration[i : i + 1] for i in range(len(request.calibration))]
        from edgekit.core.layer_groups import TOP_LEVEL

        patterns = [r"^/[^/]+$" if group == TOP_LEVEL else f"^/{group}/.*" for group in request.keep_fp32]
        ignored = nncf.IgnoredScope(patterns=patterns, validate=False) if patterns else None
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(
                model,
                nncf.Dataset(samples),
                preset=nncf.QuantizationPreset.PERFORMANCE,  # symmetric: fastest on CPUs
                subset_size=len(samples),
                ignored_scope=ignored,
            )
        ov.save_model(quantized, str(out_dir / "model.xml"), compress_to_fp16=False)
        return "model.xml", {
            "quantizer": f"nncf {nncf.__version__} post-training quantization (performance preset)",
            "calibration_images": len(samples),
        }
