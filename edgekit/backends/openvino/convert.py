"""OpenVINO's convert half: FP32/FP16 ship the ONNX export (FP16 is a runtime hint); INT8 is NNCF's
post-training quantization, saved as OpenVINO IR."""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

from edgekit.backends.base import Converter, ConvertRequest, QuantizerSetting
from edgekit.backends.openvino.run import OpenVinoBackend
from edgekit.core.errors import EdgekitError
from edgekit.data.preprocess import PreprocessSpec

# --method name → NNCF's RangeEstimatorParametersSet member, NNCF's default first.
RANGE_ESTIMATORS = {"mean_minmax": "MEAN_MINMAX", "minmax": "MINMAX", "histogram": "HISTOGRAM"}


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
    def calibration_methods(cls, precision: str) -> tuple[str, ...]:
        # NNCF's range estimators for activations: its default (mean of per-image min/max), plain min/max
        # over all images (no clipping), and a histogram fit that minimises the quantization error.
        return tuple(RANGE_ESTIMATORS) if precision == "int8" else ()

    @classmethod
    def quantizer_settings(cls, precision: str) -> tuple[QuantizerSetting, ...]:
        if precision != "int8":
            return ()
        return (
            *super().quantizer_settings(precision),
            # Asymmetric activations (better for activations that are not centred on zero), then NNCF's full
            # bias correction in place of the fast one: both slower to build, the first slightly slower to run.
            QuantizerSetting("options", options=(("preset", "mixed"),)),
            QuantizerSetting("options", options=(("preset", "mixed"), ("bias_correction", "full"))),
        )

    @classmethod
    def keeps_layer_groups(cls, precision: str) -> bool:
        return precision == "int8"

    @classmethod
    def folds_normalisation(cls) -> bool:
        return True

    @classmethod
    def fold_normalisation(cls, directory: Path, model_file: str, spec: PreprocessSpec) -> None:
        from edgekit.backends.normalise_fold import fold_into_onnx, fold_into_openvino

        if model_file.endswith(".onnx"):  # FP32 ships the ONNX export, which OpenVINO reads directly
            fold_into_onnx(directory / model_file, spec)
        else:
            fold_into_openvino(directory / model_file, spec)

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
        patterns = _ignored_patterns(fp32_onnx, request.keep_fp32)
        ignored = nncf.IgnoredScope(patterns=patterns, validate=False) if patterns else None
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        method = request.method or cls.calibration_methods("int8")[0]
        if method not in RANGE_ESTIMATORS:
            raise EdgekitError(f"the openvino backend calibrates with {', '.join(RANGE_ESTIMATORS)}, not {method}")
        options = dict(request.options)
        preset = options.get("preset", "performance")  # performance: symmetric, fastest on CPUs
        advanced = AdvancedQuantizationParameters(
            activations_range_estimator_params=getattr(RangeEstimatorParametersSet, RANGE_ESTIMATORS[method])
        )
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(
                model,
                nncf.Dataset(samples),
                preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
                subset_size=len(samples),
                fast_bias_correction=options.get("bias_correction", "fast") == "fast",
                ignored_scope=ignored,
                advanced_parameters=advanced,
            )
        ov.save_model(quantized, str(out_dir / "model.xml"), compress_to_fp16=False)
        return "model.xml", {
            "quantizer": f"nncf {nncf.__version__} post-training quantization ({preset} preset)",
            "method": method,
            "bias_correction": options.get("bias_correction", "fast"),
            "calibration_images": len(samples),
        }


def _ignored_patterns(fp32_onnx: Path, groups: tuple[str, ...]) -> list[str]:
    """NNCF ignored-scope patterns for layer groups kept in FP32: OpenVINO names its ops after the ONNX nodes
    ("/layer3/layer3.1/conv1/Conv" and suffixes), so a group is its nodes' shared name prefix."""
    import re

    import onnx

    from edgekit.core.layer_groups import TOP_LEVEL, group_prefix

    names = [node.name for node in onnx.load(str(fp32_onnx), load_external_data=False).graph.node]
    patterns = []
    for group in groups:
        prefix = group_prefix(names, group)
        if group == TOP_LEVEL:
            patterns.append(r"^/[^/]+$")
        elif prefix is not None:
            patterns.append(f"^{re.escape(prefix)}.*")
    return patterns
