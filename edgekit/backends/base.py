"""What a backend is: a run half (`Backend`, what a device imports) and a convert half (`Converter`, what the
workstation imports to write the backend's model file), and the hooks generic code calls on them.

The halves are separate classes in separate modules so that running a bundle never imports what
converting needs (torch, onnx, NNCF, litert-torch): `make lint` checks that. Generic code never compares
backend names; it asks `registry` (run) or `converters` (convert) and calls the hooks below.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Protocol, Tuple

import numpy as np

from edgekit.backends.option import BackendOption
from edgekit.core.errors import BundleError, EdgekitError
from edgekit.core.onnx_external import refuse_external_data
from edgekit.core.versions import module_available
from edgekit.data.preprocess import PreprocessSpec

if TYPE_CHECKING:
    from edgekit.core.progress import Progress
    from edgekit.targets import Target

# A device model check: (staging directory, manifest, model file built on the device) → parity figures.
# Supplied by the pipeline, which owns the reference runtime and the evaluation code.
# (typing.Dict/Tuple: these aliases are evaluated at import, and the device side runs Python 3.8.)
DeviceModelCheck = Callable[[Path, Dict[str, Any], str], Dict[str, Any]]
# Reference samples of the shipped model file: (inputs NCHW float32, the reference runtime's outputs).
Samples = Tuple[np.ndarray, np.ndarray]


class ManifestView(Protocol):
    """What a backend reads of a bundle's manifest (runtime.manifest.Manifest provides it)."""

    model_file: str
    files: Mapping[str, str]
    precision: str

    def section(self, name: str) -> Any: ...


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """The bytes a backend loads, by bundle-relative name: verified against a bundle's manifest by the
    runtime, or just written by this process. Backends load from these bytes, never by path, so nothing
    unverified can be swapped in between the check and the load."""

    main: str
    contents: Mapping[str, bytes]

    def __post_init__(self) -> None:
        for name, data in self.contents.items():
            if name.lower().endswith(".onnx"):
                refuse_external_data(name, data)  # a runtime would resolve those locations itself

    @property
    def data(self) -> bytes:
        return self.contents[self.main]

    @classmethod
    def from_directory(cls, directory: Path, main: str, backend: type[Backend]) -> ModelFiles:
        """Files this process wrote itself (a staging directory during compile): nothing foreign to verify."""
        names = (main, *backend.companion_files(main))
        return cls(main, {name: (directory / name).read_bytes() for name in names})

    @classmethod
    def from_file(cls, path: Path, backend: type[Backend]) -> ModelFiles:
        return cls.from_directory(path.parent, path.name, backend)


def unloadable(model: ModelFiles, runtime: str, exc: BaseException) -> BundleError:
    """The error for a model file the runtime refuses although its hash matched: written broken or by
    a version of the converter this runtime does not read."""
    detail = " ".join(str(exc).split())[:300]
    return BundleError(
        f"{runtime} cannot load {model.main} ({detail}); the file is not what a working edgekit writes: "
        "recompile the bundle"
    )


@dataclasses.dataclass(frozen=True)
class Finding:
    """One line of `edgekit doctor`: a topic, its status and, where something is missing, the fix."""

    topic: str
    status: str  # "ok", "missing" (not installed; fine unless a bundle needs it), "problem", "info"
    detail: str
    fix: str | None = None
    fact: bool = False  # what the machine is (a runtime's version, its GPU): recorded for a device over SSH

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Capabilities:
    devices: frozenset[str]  # target kinds it runs on: "cpu", "gpu"
    arches: frozenset[str]  # machine architectures it has builds for
    precisions: frozenset[str]
    python_module: str  # importable name; its absence means "not installed"
    install_hint: str  # what to run when it is missing
    # The bundle's model file is an ONNX file the reference runtime (ONNX Runtime) runs as well: the
    # backend turns it into its own model on the device later (TensorRT's engine, `edgekit build`), so a
    # bundle can be converted, and its parity checked, on a machine without the backend's runtime.
    portable_onnx: bool = False


@dataclasses.dataclass(frozen=True)
class TritonModel:
    """How Triton Inference Server runs a bundle's model file with one of its own backends: `platform`
    (config.pbtxt's `platform:`) or `backend` (`backend:`), the bundle's files under the names Triton looks
    for in a version folder, and where its instances run (`KIND_CPU`, `KIND_GPU`)."""

    platform: str | None
    backend: str | None
    files: tuple[tuple[str, str], ...]  # (file in the bundle, its name in <model>/1/)
    instance_kind: str = "KIND_CPU"
    default_model_filename: str | None = None  # where the main file is not the backend's default name
    parameters: tuple[tuple[str, str], ...] = ()  # config.pbtxt `parameters` the backend reads


@dataclasses.dataclass(frozen=True)
class ConvertRequest:
    """How to turn the FP32 ONNX export into this backend's model for one precision."""

    precision: str
    calibration: np.ndarray | None = None  # preprocessed images, for INT8
    method: str | None = None  # INT8 calibration method (None: the quantizer's default)
    keep_fp32: tuple[str, ...] = ()  # layer groups kept in higher precision (accuracy guard and budget)
    int8_io: str = "float32"  # a full-integer model's input/output: float32 (quantized inside) or int8
    options: tuple[tuple[str, str], ...] = ()  # the quantizer's accuracy options (QuantizerSetting.options)


@dataclasses.dataclass(frozen=True)
class QuantizerSetting:
    """One other way to run a backend's quantizer, a rung of the accuracy guard's ladder: a calibration
    method ("calibration", costs no latency) or the quantizer's own accuracy options ("options")."""

    kind: str  # "calibration" or "options"
    method: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        parts = ([f"method {self.method}"] if self.method else []) + [f"{k}={v}" for k, v in self.options]
        return ", ".join(parts) or "defaults"


class Backend(abc.ABC):
    """One inference runtime, holding one loaded model (the run half).

    `run` takes a float32 NCHW batch (uint8 NHWC pixels for a model that normalises itself, see
    `Converter.fold_normalisation`) whose size the model's input accepts (the caller splits batches for a
    static-batch model) and returns the model's first output unchanged.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    preprocesses_on_device: ClassVar[bool] = False  # `run_images` is implemented (decoded frames in)
    options: ClassVar[tuple[BackendOption, ...]] = ()  # its run and build options (`BackendOption`)

    def __init__(
        self, model: ModelFiles, threads: int, precision: str = "fp32", options: Mapping[str, Any] | None = None
    ) -> None:
        self.model = model
        self.threads = threads
        self.precision = precision
        self.options = dict(options or {})  # backend-specific run options (e.g. TensorRT's trust flag)

    @classmethod
    def companion_files(cls, main: str) -> tuple[str, ...]:
        """Files loaded together with the model file `main` (OpenVINO IR's weights)."""
        return ()

    @classmethod
    def files_to_load(cls, bundle: Path, manifest: ManifestView, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The bundle's files this backend loads, the model first; a backend with per-device models picks
        one here. The runtime reads each one verified; none may be missing from the manifest."""
        return (manifest.model_file, *cls.companion_files(manifest.model_file))

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the runtime can be used here, else a sentence saying how to get it."""
        if not module_available(cls.capabilities.python_module):
            return f"{cls.name} is not installed ({cls.capabilities.install_hint})"
        return None

    @classmethod
    @abc.abstractmethod
    def versions(cls) -> dict[str, str]:
        """Library versions recorded in manifests and benchmark results."""

    # ---- hooks generic code calls; the defaults describe a CPU runtime -----------------------------

    @classmethod
    def host_problem(cls, target: Target) -> str | None:
        """Why this machine cannot run `target`'s model with this backend, beyond the CPU architecture
        (`measure/host.py` checks that); None where it can."""
        return None

    @classmethod
    def host_target(cls, targets: Sequence[Target]) -> str | None:
        """The name of the target in `targets` that this machine's accelerator is, or None."""
        return None

    @classmethod
    def environment(cls) -> dict[str, Any]:
        """Facts about the device a number was measured on, beyond the CPU (GPU, clocks, power mode)."""
        return {}

    @classmethod
    def device_description(cls) -> str | None:
        """The accelerator this backend runs on here, in words ("NVIDIA H200 (sm_90)"); None for a CPU."""
        return None

    @classmethod
    def target_note(cls, target: Target) -> str | None:
        """What `edgekit targets` should say about running this backend's bundles on `target`'s device."""
        return None

    @classmethod
    def diagnose(cls) -> list[Finding]:
        """What `edgekit doctor` says about this backend here: installed or not (with the install command),
        its version and where it is imported from."""
        import importlib.util

        reason = cls.unavailable_reason()
        if reason:
            return [Finding(cls.name, "missing", reason, cls.capabilities.install_hint.split(";")[0], fact=True)]
        spec = importlib.util.find_spec(cls.capabilities.python_module)
        where = f" from {Path(spec.origin).parent}" if spec and spec.origin else ""
        versions = ", ".join(f"{k} {v}" for k, v in cls.versions().items())
        return [Finding(cls.name, "ok", f"{versions}{where}", fact=True)]

    @classmethod
    def describe(cls, bundle: Path, manifest: ManifestView) -> dict[str, str]:
        """Rows `edgekit inspect` and `edgekit compile` print about this backend's parts of a bundle."""
        return {}

    @classmethod
    def triton_model(cls, bundle: Path, manifest: ManifestView, options: Mapping[str, Any]) -> TritonModel | None:
        """How Triton runs this bundle's model natively, or None where Triton has no backend for it (edgekit's
        own Python-backend model serves it then). Called where the export runs: a backend with per-device
        models (TensorRT's engines) picks the one built for this machine, as `files_to_load` does."""
        return None

    @classmethod
    def trusted_run_options(cls) -> dict[str, Any]:
        """Run options for a model file this process has just built itself (nothing foreign to distrust)."""
        return {}

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray: ...

    @classmethod
    def input_errors(cls) -> tuple[type[BaseException], ...]:
        """What the runtime raises when a model does not take the input it is given (shape, type)."""
        return ()

    def execution_precision(self) -> str:
        """What the runtime actually computes in (it may differ from what was asked)."""
        return self.precision

    def run_images(self, images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray | None:
        """Decoded uint8 HWC RGB images → outputs, preprocessing on the accelerator; None: not offered
        (the caller preprocesses on the CPU and calls `run`)."""
        return None

    def stage_ms(self) -> dict[str, float]:
        """Per-stage device times of the last `run_images` (GPU backends), else empty."""
        return {}

    def device_ms(self) -> float | None:
        """Accelerator time of the last `run`, measured on the device (None on a CPU backend)."""
        return None

    # The device build (`edgekit build`): hooks of the run half, so that a device never imports a convert half.

    @classmethod
    def parse_options(cls, values: Mapping[str, Any]) -> Any:
        """The backend's build options (`BackendOption`, stage "build": TensorRT's engine options) from the
        values given, as the backend's own type; None when none were given. A backend without any refuses them."""
        given = sorted(name for name, value in values.items() if value is not None)
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise EdgekitError(f"{flags} do not apply to backend {cls.name}")
        return None

    @classmethod
    def native_build_command(cls, manifest: dict[str, Any], bundle: Path, options: Any, version: str | None) -> str:
        """The vendor tool's command that builds the device model (`edgekit build --print-trtexec`)."""
        raise EdgekitError(
            f"{bundle} was compiled for {cls.name}, which has no device build; --print-trtexec is for "
            "TensorRT bundles (compile for a GPU target)"
        )

    @classmethod
    def check_build_on_device(cls, manifest: dict[str, Any], bundle: Path) -> None:
        """Refuse, before anything is copied, a bundle `edgekit build` cannot extend on this machine."""
        raise EdgekitError(
            f"{bundle} was compiled for {cls.name}, which needs no build on the device; `edgekit build` "
            "makes TensorRT engines: compile for a GPU target first (`edgekit compile MODEL --target "
            "jetson-orin-nano`; `edgekit targets`)"
        )

    @classmethod
    def build_on_device(
        cls,
        stage: Path,
        manifest: dict[str, Any],
        options: Any,
        settings: Mapping[str, Any],
        check: DeviceModelCheck,
        progress: Progress,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`edgekit build`: add this device's own model to a bundle copy in `stage`: (manifest, record)."""
        raise NotImplementedError  # check_build_on_device refused first


class Converter(abc.ABC):
    """Writes a backend's model file from the FP32 ONNX export (the convert half)."""

    backend: ClassVar[type[Backend]]

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why converting (and the parity run after it) cannot happen here, checked before any slow work.

        Usually the runtime itself; a portable ONNX needs no runtime (the reference runtime checks it),
        a backend that needs a converter besides its runtime (LiteRT) adds that.
        """
        return None if cls.backend.capabilities.portable_onnx else cls.backend.unavailable_reason()

    @classmethod
    def versions(cls) -> dict[str, str]:
        return cls.backend.versions()

    @classmethod
    @abc.abstractmethod
    def convert(cls, fp32_onnx: Path, out_dir: Path, request: ConvertRequest) -> tuple[str, dict[str, object]]:
        """Write the model for `request` into `out_dir`: (model file name, facts for the manifest)."""

    @classmethod
    def folds_normalisation(cls) -> bool:
        """Whether `fold_normalisation` works (`compile --normalise-in-model`)."""
        return False

    @classmethod
    def fold_normalisation(cls, directory: Path, model_file: str, spec: PreprocessSpec) -> None:
        """Rewrite the model file `model_file` in `directory` (with its companions) so that it takes uint8
        NHWC pixels and normalises them itself with `spec`'s mean and std."""
        raise EdgekitError(f"the {cls.backend.name} backend cannot take pixels: normalisation stays on the host")

    @classmethod
    def calibration_methods(cls, precision: str) -> tuple[str, ...]:
        """The `--method` values this backend's quantizer takes for `precision`, its default first."""
        return ()

    @classmethod
    def quantizer_settings(cls, precision: str) -> tuple[QuantizerSetting, ...]:
        """Other ways to run the quantizer when a build fails the accuracy guard, cheapest first: the other
        calibration methods, then the quantizer's accuracy options. Empty: nothing else to try."""
        methods = cls.calibration_methods(precision)
        return tuple(QuantizerSetting("calibration", method=m) for m in methods[1:])

    @classmethod
    def keeps_layer_groups(cls, precision: str) -> bool:
        """Whether `ConvertRequest.keep_fp32` works for `precision` (the guard's last rung)."""
        return False

    @classmethod
    def check_options(cls, target: Target, precision: str, options: Any) -> None:
        """Refuse, before any slow work, options this target and precision cannot have."""
        return None

    @classmethod
    def finish_bundle(
        cls,
        stage: Path,
        manifest: dict[str, Any],
        target: Target,
        out: Path,
        options: Any,
        check: DeviceModelCheck,
        progress: Progress,
        samples: Samples | None = None,
    ) -> dict[str, Any]:
        """After the model file is written and checked: add what the device needs besides it (TensorRT:
        the preprocessing kernels, the engine options, and the engine itself where this machine is the
        device; TensorRT on a JetPack edgekit cannot run on: the trtexec kit, checked against `samples`).
        Returns the manifest (not yet written)."""
        return manifest
