"""What every backend is, and the table each declares so a request is checked before slow work."""

from __future__ import annotations

import abc
import dataclasses
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgekit.data.preprocess import PreprocessSpec


def module_available(name: str) -> bool:
    """Whether `import name` would find the module (False also when its parent package is missing)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package; a module without a spec
        return False


@dataclasses.dataclass(frozen=True)
class Capabilities:
    devices: frozenset[str]  # target kinds it runs on: "cpu", "gpu"
    arches: frozenset[str]  # machine architectures it has builds for
    precisions: frozenset[str]
    python_module: str  # importable name; its absence means "not installed"
    install_hint: str  # what to run when it is missing
    # `build` needs no runtime: it writes a portable file (TensorRT's ONNX) that the device turns into
    # its own model later (`edgekit build`), so a bundle can be compiled on a machine without the runtime.
    builds_without_runtime: bool = False


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """How to turn the FP32 ONNX export into this backend's model for one precision."""

    precision: str
    calibration: np.ndarray | None = None  # preprocessed images, for INT8
    method: str = "minmax"  # INT8 calibration method, where the backend's quantizer offers a choice
    keep_fp32: tuple[str, ...] = ()  # layer groups kept in higher precision (accuracy budget)
    int8_io: str = "float32"  # a full-integer model's input/output: float32 (quantized inside) or int8


class Backend(abc.ABC):
    """One inference runtime, holding one loaded model.

    `build` writes the backend's model file(s) for a precision from the FP32 ONNX export; `run`
    takes a float32 NCHW batch whose size the model's input accepts (the caller splits batches for a
    static-batch model) and returns the model's first output unchanged.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(
        self, model_path: Path, threads: int, precision: str = "fp32", options: Mapping[str, Any] | None = None
    ) -> None:
        self.model_path = model_path
        self.threads = threads
        self.precision = precision
        self.options = dict(options or {})  # backend-specific run options (e.g. TensorRT's trust flag)

    @classmethod
    def model_file(cls, bundle: Path, manifest: dict[str, Any], options: Mapping[str, Any]) -> Path:
        """The file of `bundle` this backend loads; a backend with per-device models picks one here."""
        return bundle / manifest["model_file"]

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the runtime can be used here, else a sentence saying how to get it."""
        if not module_available(cls.capabilities.python_module):
            return f"{cls.name} is not installed ({cls.capabilities.install_hint})"
        return None

    @classmethod
    def build_unavailable_reason(cls) -> str | None:
        """Why `build` (and the parity run after it) cannot happen here, checked before any slow work.

        Usually the runtime itself; a backend that builds a portable file without it (TensorRT) can
        always build, one that needs a converter besides its runtime (LiteRT) adds that.
        """
        return None if cls.capabilities.builds_without_runtime else cls.unavailable_reason()

    @classmethod
    @abc.abstractmethod
    def versions(cls) -> dict[str, str]:
        """Library versions recorded in manifests and benchmark results."""

    @classmethod
    @abc.abstractmethod
    def build(cls, fp32_onnx: Path, out_dir: Path, request: BuildRequest) -> tuple[str, dict[str, object]]:
        """Write the model for `request` into `out_dir`: (model file name, facts for the manifest)."""

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray: ...

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
