"""ONNX Runtime's convert half: FP32 ships the export as is; INT8 is ONNX Runtime's static Q/DQ quantizer
with its own (CPU) placement."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgekit.backends.base import Converter, ConvertRequest
from edgekit.backends.onnxruntime.run import OnnxRuntimeBackend
from edgekit.backends.qdq import QdqQuantizerHooks
from edgekit.data.preprocess import PreprocessSpec

MODEL_FILE = "model.onnx"


class OnnxRuntimeConverter(QdqQuantizerHooks, Converter):
    backend = OnnxRuntimeBackend

    @classmethod
    def convert(cls, fp32_onnx: Path, out_dir: Path, request: ConvertRequest) -> tuple[str, dict[str, object]]:
        if request.precision == "fp32":
            shutil.copyfile(fp32_onnx, out_dir / MODEL_FILE)
            return MODEL_FILE, {}
        from edgekit.backends.qdq import quantize_int8

        if request.calibration is None:
            raise ValueError("INT8 needs calibration inputs")
        method = request.method or cls.calibration_methods("int8")[0]
        quantize_int8(fp32_onnx, out_dir / MODEL_FILE, request.calibration, "cpu", method, request.keep_fp32)
        return MODEL_FILE, {
            "quantizer": "onnxruntime.quantization.quantize_static (QDQ, cpu placement)",
            "method": method,
            "calibration_images": len(request.calibration),
        }

    @classmethod
    def folds_normalisation(cls) -> bool:
        return True

    @classmethod
    def fold_normalisation(cls, directory: Path, model_file: str, spec: PreprocessSpec) -> None:
        from edgekit.backends.normalise_fold import fold_into_onnx

        fold_into_onnx(directory / model_file, spec)
