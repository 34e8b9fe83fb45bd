"""ONNX Runtime on the CPU: the reference runtime, available on every platform."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Backend, Capabilities


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    capabilities = Capabilities(
        devices=frozenset({"cpu"}),
        arches=frozenset({"x86_64", "aarch64"}),
        precisions=frozenset({"fp32", "int8"}),
        python_module="onnxruntime",
        install_hint="pip install onnxruntime",
    )

    def __init__(
        self, model_path: Path, threads: int, precision: str = "fp32", options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(model_path, threads, precision, options)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    @classmethod
    def versions(cls) -> dict[str, str]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]
