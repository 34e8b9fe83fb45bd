"""TensorRT on NVIDIA GPUs (Jetson and desktop), the run half: the engine built for this GPU, the kernels.

Precision lives in that file, as TensorRT 10/11 want it: FP16 by converting the graph's types, INT8
by Q/DQ nodes placed and typed as TensorRT's parser accepts (`optimize/qdq_rules.py`). `build` writes
it without TensorRT, so a bundle for a Jetson can be compiled anywhere; the engine is built on the
device by `edgekit build` (`engine.py`; convert.py writes the ONNX) and recorded in the manifest beside the ONNX.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.backends.base import Backend, Capabilities
from edgekit.core.versions import module_available
from edgekit.data.preprocess import PreprocessSpec

if TYPE_CHECKING:
    from edgekit.targets import Target

INSTALL_HINT = (
    "TensorRT comes with JetPack on a Jetson (sudo apt install python3-libnvinfer) and from "
    "`pip install tensorrt` on a desktop GPU; edgekit also needs `pip install cuda-python`"
)


class TensorRTBackend(Backend):
    name = "tensorrt"
    capabilities = Capabilities(
        devices=frozenset({"gpu"}),
        arches=frozenset({"x86_64", "aarch64"}),
        precisions=frozenset({"fp32", "fp16", "int8"}),
        python_module="tensorrt",
        install_hint=INSTALL_HINT,
        portable_onnx=True,
    )

    def __init__(
        self, model_path: Path, threads: int, precision: str = "fp32", options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(model_path, threads, precision, options)
        from edgekit.backends.tensorrt.engine_runner import EngineRunner

        self._runner = EngineRunner(
            model_path,
            trust_host_code=bool(self.options.get("trust_engine_host_code")),
            cuda_graph=bool(self.options.get("cuda_graph")),
        )
        self._preprocessor: Any = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = super().unavailable_reason()
        if reason is None and not module_available("cuda.bindings"):
            return "cuda-python is not installed (pip install cuda-python)"
        return reason

    @classmethod
    def versions(cls) -> dict[str, str]:
        from edgekit.backends.tensorrt.builder import tensorrt_version

        return {"tensorrt": tensorrt_version() or "not installed (engine built on the device)"}

    @classmethod
    def host_problem(cls, target: Target) -> str | None:
        from edgekit.backends.tensorrt.engine import device_problem

        return device_problem(target)

    @classmethod
    def host_target(cls, targets: Sequence[Target]) -> str | None:
        """The GPU target of this machine's GPU, where TensorRT is installed to run it."""
        if cls.unavailable_reason() is not None:
            return None
        from edgekit.backends.tensorrt.device import probe
        from edgekit.targets import host_arch

        device = probe()
        if device is None:
            return None
        matching = [
            t
            for t in targets
            if t.gpu and t.gpu.compute_capability == device.compute_capability and t.arch == host_arch()
        ]
        # Orin Nano / NX / AGX share sm_87: the one whose memory is nearest this device's tells them apart.
        matching.sort(key=lambda t: abs(t.gpu.memory_mb - device.memory_mb) if t.gpu else 0)
        return matching[0].name if matching else None

    @classmethod
    def environment(cls) -> dict[str, Any]:
        from edgekit.backends.tensorrt.builder import tensorrt_version
        from edgekit.backends.tensorrt.device import clocks_and_power, probe

        device = probe()
        return {
            "gpu": device.to_dict() if device else None,
            "tensorrt": tensorrt_version(),
            "gpu_clocks_power": clocks_and_power(),
        }

    @classmethod
    def device_description(cls) -> str | None:
        from edgekit.backends.tensorrt.device import describe, probe

        return describe(probe())

    @classmethod
    def trusted_run_options(cls) -> dict[str, Any]:
        return {"trust_engine_host_code": True}

    @classmethod
    def model_file(cls, bundle: Path, manifest: dict[str, Any], options: Mapping[str, Any]) -> Path:
        """The engine built for this TensorRT and this GPU; refuses (with the rebuild command) otherwise."""
        from edgekit.backends.tensorrt import device
        from edgekit.backends.tensorrt.builder import tensorrt_version
        from edgekit.backends.tensorrt.engines import select_engine

        record = select_engine(bundle, manifest, tensorrt_version() or "", device.probe(), options.get("dla_core"))
        if record.get("version_compatible") and not options.get("trust_engine_host_code"):
            from edgekit.core.errors import EdgekitError

            raise EdgekitError(
                f"{record['file']} is a version-compatible plan, which runs host code stored in the plan; "
                "load it only if you trust its origin, with --trust-engine-host-code"
            )
        return bundle / record["file"]

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._runner.run(batch)

    def run_images(self, images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray | None:
        """Decoded RGB images, preprocessed on the GPU by the bundle's fused kernel, then the network."""
        if self._preprocessor is None or self._preprocessor.spec != spec:
            from edgekit.backends.tensorrt.kernels.bundle import load_cubins
            from edgekit.backends.tensorrt.kernels.launch import CudaPreprocessor

            # Engines live in <bundle>/engines/: the bundle's kernels are beside them.
            bundle = self.model_path.parent.parent
            self._preprocessor = CudaPreprocessor(spec, binaries=load_cubins(bundle) or None)
        return self._runner.run_frames(list(images), self._preprocessor)

    def stage_ms(self) -> dict[str, float]:
        times = self._runner.times
        return {
            "upload_ms": times.upload_ms,
            "preprocess_ms": times.preprocess_ms,
            "network_ms": times.network_ms,
            "download_ms": times.download_ms,
        }

    def device_ms(self) -> float | None:
        return self._runner.times.network_ms
