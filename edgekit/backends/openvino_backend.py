"""OpenVINO on x86/ARM CPUs: reads the bundle's ONNX file directly, no separate IR to keep in sync."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.backends.base import Backend, Capabilities


class OpenVinoBackend(Backend):
    name = "openvino"
    capabilities = Capabilities(
        devices=frozenset({"cpu"}),
        arches=frozenset({"x86_64", "aarch64"}),
        precisions=frozenset({"fp32"}),
        model_suffix=".onnx",
        python_module="openvino",
        install_hint="pip install openvino",
    )

    def __init__(self, model_path: Path, threads: int) -> None:
        super().__init__(model_path, threads)
        import openvino as ov

        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            # Without this OpenVINO silently runs bf16 on CPUs that have it (AMX/AVX512-BF16):
            # an "fp32" bundle must compute in fp32.
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = core.compile_model(core.read_model(str(model_path)), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._output = self._compiled.output(0)

    @classmethod
    def versions(cls) -> dict[str, str]:
        import openvino as ov

        return {"openvino": ov.get_version()}

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: batch})
        return np.array(result[self._output], copy=True)
