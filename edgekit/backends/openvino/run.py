"""OpenVINO on x86/ARM CPUs.

FP32 runs the bundle's ONNX file directly. INT8 is quantized by OpenVINO's own NNCF and shipped as
OpenVINO IR (model.xml + model.bin): OpenVINO runs NNCF's placement faster than an ONNX Runtime Q/DQ
file (several times on VNNI CPUs per shared/DESIGN.md; 1.1× at batch 8 on the AMD EPYC of
benchmarks/results/cpu_backends.md). FP16 is OpenVINO's inference-precision hint on the FP32
model, which the CPU plugin honours only where the CPU has FP16/BF16 arithmetic; the precision it
really computes in is read back and recorded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Backend, Capabilities, ManifestView, ModelFiles, TritonModel, unloadable
from edgekit.core.pool import Pool

_HINTS = {"fp32": "f32", "int8": "f32", "fp16": "f16"}


class OpenVinoBackend(Backend):
    name = "openvino"
    capabilities = Capabilities(
        devices=frozenset({"cpu"}),
        arches=frozenset({"x86_64", "aarch64"}),
        precisions=frozenset({"fp32", "fp16", "int8"}),
        python_module="openvino",
        install_hint="pip install openvino",
    )

    def __init__(
        self, model: ModelFiles, threads: int, precision: str = "fp32", options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(model, threads, precision, options)
        import openvino as ov

        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            # Without an explicit hint OpenVINO silently runs bf16 on CPUs that have it (AMX /
            # AVX512-BF16): an fp32 or int8 bundle must keep its float parts in fp32.
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
        }
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        weights = [model.contents[name] for name in self.companion_files(model.main)]
        try:
            if weights:  # OpenVINO IR: the weights as a tensor over the verified bytes
                graph = core.read_model(model.data, ov.Tensor(np.frombuffer(weights[0], np.uint8)))
            else:
                graph = core.read_model(model.data)
            self._compiled = core.compile_model(graph, "CPU", config)
        except RuntimeError as exc:  # OpenVINO reports every unreadable model as RuntimeError
            raise unloadable(model, "openvino", exc) from None
        # An infer request holds its inputs and outputs, so two threads sharing one would read each
        # other's results: each call takes a request of its own from a pool.
        self._requests = Pool(self._compiled.create_infer_request, limit=os.cpu_count() or 1)
        self._output = self._compiled.output(0)

    @classmethod
    def companion_files(cls, main: str) -> tuple[str, ...]:
        return (main[: -len(".xml")] + ".bin",) if main.endswith(".xml") else ()

    @classmethod
    def triton_model(cls, bundle: Path, manifest: ManifestView, options: Mapping[str, Any]) -> TritonModel:
        """Triton's OpenVINO backend: IR as `model.xml` + `model.bin`, or the FP32 ONNX file, which it reads
        too (named by `default_model_filename`)."""
        main = manifest.model_file
        # The backend passes these to OpenVINO as compile properties: the same precision hint edgekit runs with.
        hints = (("PERFORMANCE_HINT", "LATENCY"), ("INFERENCE_PRECISION_HINT", _HINTS[manifest.precision]))
        if main.endswith(".xml"):
            files = ((main, "model.xml"), (cls.companion_files(main)[0], "model.bin"))
            return TritonModel(None, "openvino", files, parameters=hints)
        return TritonModel(None, "openvino", ((main, "model.onnx"),), "KIND_CPU", "model.onnx", hints)

    @classmethod
    def versions(cls) -> dict[str, str]:
        import openvino as ov

        versions = {"openvino": ov.get_version()}
        return versions

    @classmethod
    def input_errors(cls) -> tuple[type[BaseException], ...]:
        return (RuntimeError,)  # OpenVINO reports a shape mismatch as RuntimeError

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._requests.take() as request:
            # Shared in and out: no copy of the batch into the request and none of the outputs out of it but the
            # one below, taken before the request goes back to the pool (what OpenVINO's own call costs).
            result = request.infer({0: batch}, share_inputs=True, share_outputs=True)
            return np.array(result[self._output], copy=True)

    def execution_precision(self) -> str:
        if self.precision == "int8":
            return "int8 (float parts f32)"
        return self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
