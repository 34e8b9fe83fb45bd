"""TensorRT on NVIDIA GPUs (Jetson and desktop), the run half: the engine built for this GPU, the kernels.

Precision lives in that file, as TensorRT 10/11 want it: FP16 by converting the graph's types, INT8
by Q/DQ nodes placed and typed as TensorRT's parser accepts (`optimize/qdq_rules.py`). `build` writes
it without TensorRT, so a bundle for a Jetson can be compiled anywhere; the engine is built on the
device by `edgekit build` (`bundle_engines.py`; convert.py writes the ONNX), recorded in the manifest.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.backends.base import (
    Backend,
    Capabilities,
    DeviceModelCheck,
    Finding,
    ManifestView,
    ModelFiles,
    TritonModel,
)
from edgekit.backends.tensorrt.options import OPTIONS
from edgekit.core.errors import EdgekitError
from edgekit.core.progress import Progress
from edgekit.core.versions import module_available
from edgekit.data.preprocess import PreprocessSpec

if TYPE_CHECKING:
    from edgekit.backends.tensorrt.recipe import BuildOptions
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
    options = OPTIONS
    preprocesses_on_device = True

    def __init__(
        self, model: ModelFiles, threads: int, precision: str = "fp32", options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(model, threads, precision, options)
        from edgekit.backends.tensorrt.engine_runner import EngineRunner

        # One execution context, stream and set of device buffers: calls from several threads take turns.
        self._lock = threading.Lock()
        self._runner = EngineRunner(
            model.data,
            model.main,
            trust_host_code=bool(self.options.get("trust_engine_host_code")),
            cuda_graph=bool(self.options.get("cuda_graph")),
        )
        self._preprocessor: Any = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = super().unavailable_reason()
        if reason is not None:
            from edgekit.backends.tensorrt.doctor import SYSTEM_SITE, jetson_release

            if jetson_release() is not None:  # JetPack installs TensorRT for the system Python only
                return (
                    "TensorRT's Python module is not importable here: on a Jetson it comes with JetPack for the "
                    f"system Python only (sudo apt install python3-libnvinfer); use {SYSTEM_SITE}"
                )
        if reason is None and not (module_available("cuda.bindings") or module_available("cuda.cudart")):
            return "cuda-python is not installed (pip install cuda-python)"
        return reason

    @classmethod
    def versions(cls) -> dict[str, str]:
        from edgekit.backends.tensorrt.trt_builder import tensorrt_version

        return {"tensorrt": tensorrt_version() or "not installed (engine built on the device)"}

    @classmethod
    def host_problem(cls, target: Target) -> str | None:
        """Why this machine cannot build or run `target`'s engine (short), or None when it is that device."""
        from edgekit.backends.tensorrt.device import describe, probe
        from edgekit.backends.tensorrt.trt_builder import tensorrt_version

        if tensorrt_version() is None:
            return "TensorRT is not installed on this machine"
        missing = cls.unavailable_reason()
        if missing:
            return missing
        device = probe()
        if device is None:
            return "TensorRT is installed but no CUDA GPU is visible to this process"
        assert target.gpu is not None  # a tensorrt bundle is only compiled for GPU targets
        if device.compute_capability != target.gpu.compute_capability:
            return f"this GPU is {describe(device)}, the target {target.name} is sm_{target.gpu.sm}"
        return None

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
        from edgekit.backends.tensorrt.device import clocks_and_power, probe
        from edgekit.backends.tensorrt.trt_builder import tensorrt_version

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
    def target_note(cls, target: Target) -> str | None:
        from edgekit.backends.tensorrt.trtexec import edgekit_runs_on

        if target.gpu is None:
            return None
        if edgekit_runs_on(target.gpu.tensorrt.max):
            return "edgekit build, predict and bench run there (pip install edgekit)"
        return "edgekit cannot run on its JetPack (Python 3.6): the bundle carries trtexec/build_engine.sh"

    @classmethod
    def diagnose(cls) -> list[Finding]:
        from edgekit.backends.tensorrt.doctor import diagnose

        return diagnose()

    @classmethod
    def describe(cls, bundle: Path, manifest: ManifestView) -> dict[str, str]:
        from edgekit.backends.tensorrt.engine_records import engine_records

        engines = engine_records(manifest.section("tensorrt"))
        rows = {"preprocessing kernel": str(manifest.section("kernels").get("summary", "?"))}
        kit = manifest.section("trtexec")
        if kit and not engines:
            rows["TensorRT engines"] = (
                f"built on the device with NVIDIA's trtexec: sh {bundle}/{kit.get('dir')}/build_engine.sh"
            )
        elif not engines:
            rows["TensorRT engines"] = f"none yet: run `edgekit build {bundle}` on the device"
        for index, engine in enumerate(engines):
            placement = engine.get("placement") if isinstance(engine.get("placement"), dict) else {}
            where = str(placement.get("device", "?"))
            if where == "DLA":
                where += f" core {placement.get('dla_core')}"
            rows[f"engine {index + 1}"] = (
                f"{engine['file']}: TensorRT {engine['tensorrt_version']}, {engine['device']['name']} "
                f"(sm_{engine['device'].get('sm', '?')}), {engine.get('precision', '?')}, {where}, "
                f"built {engine.get('built', '?')}"
            )
        return rows

    @classmethod
    def trusted_run_options(cls) -> dict[str, Any]:
        return {"trust_engine_host_code": True}

    @classmethod
    def files_to_load(cls, bundle: Path, manifest: ManifestView, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The engine built for this TensorRT and this GPU (refused, with the rebuild command, where there is
        none), then the bundle's preprocessing cubins (NVRTC compiles the kernel where none fits)."""
        from edgekit.backends.tensorrt import device
        from edgekit.backends.tensorrt.engine_records import select_engine
        from edgekit.backends.tensorrt.kernels.bundle import cubin_names
        from edgekit.backends.tensorrt.trt_builder import tensorrt_version

        section = manifest.section("tensorrt")
        record = select_engine(bundle, section, tensorrt_version() or "", device.probe(), options.get("dla_core"))
        if record.get("version_compatible") and not options.get("trust_engine_host_code"):
            from edgekit.core.errors import EdgekitError

            raise EdgekitError(
                f"{record['file']} is a version-compatible plan, which runs host code stored in the plan; "
                "load it only if you trust its origin, with --trust-engine-host-code"
            )
        return (record["file"], *cubin_names(manifest.files))

    @classmethod
    def triton_model(cls, bundle: Path, manifest: ManifestView, options: Mapping[str, Any]) -> TritonModel:
        """Triton's TensorRT backend runs the plan built for this GPU and this TensorRT (`edgekit build` on
        the device, then the export there); Triton must run the same TensorRT release."""
        engine = cls.files_to_load(bundle, manifest, options)[0]
        return TritonModel("tensorrt_plan", None, ((engine, "model.plan"),), instance_kind="KIND_GPU")

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._runner.run(batch)

    def run_images(self, images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray | None:
        """Decoded RGB images, preprocessed on the GPU by the bundle's fused kernel, then the network."""
        with self._lock:
            if self._preprocessor is None or self._preprocessor.spec != spec:
                from edgekit.backends.tensorrt.kernels.bundle import cubins_by_sm
                from edgekit.backends.tensorrt.kernels.launch import CudaPreprocessor

                self._preprocessor = CudaPreprocessor(spec, binaries=cubins_by_sm(self.model.contents) or None)
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

    @classmethod
    def parse_options(cls, values: Mapping[str, Any]) -> BuildOptions | None:
        """Engine options from the values given (None: not given); unknown names are a bug in the caller."""
        from edgekit.backends.tensorrt.recipe import BuildOptions

        given = {name: value for name, value in values.items() if value is not None}
        return BuildOptions(**given) if given else None

    @classmethod
    def build_on_device(
        cls,
        stage: Path,
        manifest: dict[str, Any],
        options: BuildOptions | None,
        settings: Mapping[str, Any],
        check: DeviceModelCheck,
        progress: Progress,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A new engine for this GPU; without options, those recorded at compile time."""
        from edgekit.backends.tensorrt.bundle_engines import EngineSettings, add_engine
        from edgekit.backends.tensorrt.recipe import BuildOptions

        if options is None:
            options = BuildOptions.from_dict((manifest.get("tensorrt") or {}).get("options") or {})
        updated = add_engine(stage, manifest, options, EngineSettings(**settings), check, progress)
        return updated, updated["tensorrt"]["engines"][-1]

    @classmethod
    def native_build_command(
        cls, manifest: dict[str, Any], bundle: Path, options: BuildOptions | None, version: str | None
    ) -> str:
        """The trtexec command for TensorRT `version` (default: the oldest the target's device can have)."""
        from edgekit.backends.tensorrt.bundle_engines import trtexec_build
        from edgekit.backends.tensorrt.recipe import BuildOptions
        from edgekit.backends.tensorrt.trtexec import shell_line
        from edgekit.targets import target_from_record

        target = target_from_record(manifest["target"])
        assert target.gpu is not None  # a TensorRT bundle's target is a GPU target
        if version is not None and not target.gpu.tensorrt.admits(version):
            raise EdgekitError(f"{target.name}'s device has TensorRT {target.gpu.tensorrt}, not {version}")
        if options is None:
            options = BuildOptions.from_dict((manifest.get("tensorrt") or {}).get("options") or {})
        return f"cd {shell_line([str(bundle)])} && " + shell_line(
            trtexec_build(manifest, target, options, version or target.gpu.tensorrt.min)
        )

    @classmethod
    def check_build_on_device(cls, manifest: dict[str, Any], bundle: Path) -> None:
        from edgekit.backends.tensorrt.bundle_engines import check_device

        check_device(manifest, bundle)
