"""ONNX Runtime on the CPU: the reference runtime, available on every platform."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Backend, Capabilities, ManifestView, ModelFiles, TritonModel, unloadable


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
        self, model: ModelFiles, threads: int, precision: str = "fp32", options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(model, threads, precision, options)
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # From the verified bytes: ONNX Runtime then also refuses external-data files, which nothing verified.
        # InferenceSession.run is thread-safe, so one session serves every thread.
        refused = (state.Fail, state.InvalidProtobuf, state.InvalidGraph, state.InvalidArgument, state.NoSuchFile)
        try:
            self._session = ort.InferenceSession(model.data, options, providers=["CPUExecutionProvider"])
        except refused as exc:
            raise unloadable(model, "onnxruntime", exc) from None
        self._input = self._session.get_inputs()[0].name

    @classmethod
    def versions(cls) -> dict[str, str]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__}

    @classmethod
    def triton_model(cls, bundle: Path, manifest: ManifestView, options: Mapping[str, Any]) -> TritonModel:
        """Triton's ONNX Runtime backend, which looks for `model.onnx`."""
        return TritonModel("onnxruntime_onnx", None, ((manifest.model_file, "model.onnx"),))

    @classmethod
    def input_errors(cls) -> tuple[type[BaseException], ...]:
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        return (state.InvalidArgument, state.Fail, state.RuntimeException)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]
