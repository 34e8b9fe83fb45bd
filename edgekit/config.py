"""Frozen, validated configs: every check that can fail fast runs before any slow work."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgekit.backends import REGISTRY, Backend, check_support, get_backend
from edgekit.backends.tensorrt.recipe import BuildOptions, check_for_target
from edgekit.bundle import check_writable_destination
from edgekit.data.images import has_class_folders
from edgekit.errors import EdgekitError
from edgekit.optimize.prune_config import PruneSettings, check_latency_target, validate_settings
from edgekit.targets import Target


@dataclasses.dataclass(frozen=True)
class CompileConfig:
    model: Path
    target: Target
    out: Path
    precision: str = "fp32"
    backend: str | None = None  # None: the target's first available backend
    force: bool = False
    class_names: tuple[str, ...] | None = None
    transform_input: bool | None = None  # None: from the checkpoint, else on
    resize: int | None = None  # preprocessing overrides
    crop: int | None = None
    val: Path | None = None  # images for the parity check (and accuracy, when labelled)
    parity_images: int = 200
    trust_pickle: bool = False
    threads: int | None = None  # None: the target's
    target_from_host: bool = False  # the user gave no --target: say which one was picked
    calib: Path | None = None  # INT8 calibration images (labels not needed)
    calib_size: int = 256
    method: str = "minmax"  # INT8 calibration method (ONNX Runtime's quantizer)
    max_accuracy_drop: float | None = None  # top-1 points the quantized model may lose vs FP32
    prune: PruneSettings | None = None  # a pruning stage before export (`--prune` and friends)
    build_options: BuildOptions | None = None  # TensorRT engine options, for GPU targets (None: defaults)

    @property
    def is_onnx(self) -> bool:
        return self.model.suffix.lower() == ".onnx"


def choose_backend(target: Target, precision: str, requested: str | None) -> type[Backend]:
    """The backend that will run the bundle, or an error naming why none can."""
    if precision not in target.precisions:
        raise EdgekitError(
            f"target {target.name} does not support precision {precision}; it supports {', '.join(target.precisions)}"
        )
    if requested is not None:
        backend = get_backend(requested)
        reason = check_support(backend, target.kind, target.arch, precision) or backend.build_unavailable_reason()
        if reason:
            raise EdgekitError(f"backend {requested} cannot be used for target {target.name}: {reason}")
        return backend
    reasons = []
    for name in target.backends[precision]:
        backend = REGISTRY.get(name)
        if backend is None:
            reasons.append(f"{name}: not a backend of this edgekit version")
            continue
        reason = check_support(backend, target.kind, target.arch, precision) or backend.build_unavailable_reason()
        if reason is None:
            return backend
        reasons.append(reason)
    raise EdgekitError(f"no backend of target {target.name} can run {precision} here: {'; '.join(reasons)}")


def validate(config: CompileConfig) -> type[Backend]:
    """Check everything that does not need the model loaded; returns the chosen backend."""
    if not config.model.is_file():
        raise EdgekitError(f"{config.model} does not exist or is not a file")
    if config.is_onnx and config.transform_input is not None:
        raise EdgekitError(
            "--transform-input/--no-transform-input apply to PyTorch checkpoints; an ONNX file has its own"
        )
    if config.val is not None and not config.val.is_dir():
        raise EdgekitError(f"--val {config.val} is not a directory")
    if config.parity_images < 1:
        raise EdgekitError("--parity-images must be at least 1")
    if config.threads is not None and config.threads < 0:
        raise EdgekitError("--threads must be 0 (all cores) or more")
    if config.precision == "int8" and config.calib is None and config.val is None:
        raise EdgekitError("--precision int8 needs calibration images: pass --calib DIR (or at least --val DIR)")
    if config.calib is not None and not config.calib.is_dir():
        raise EdgekitError(f"--calib {config.calib} is not a directory of images")
    if config.calib_size < 1:
        raise EdgekitError("--calib-size must be at least 1")
    if config.max_accuracy_drop is not None:
        if config.max_accuracy_drop < 0:
            raise EdgekitError("--max-accuracy-drop is in top-1 points and must be >= 0")
        if not has_class_folders(config.val):
            raise EdgekitError("--max-accuracy-drop needs --val DIR with one sub-directory of images per class")
    if config.prune is not None:
        if config.is_onnx:
            raise EdgekitError("--prune needs a PyTorch GoogLeNet checkpoint; an ONNX file cannot be pruned")
        if config.precision == "auto":
            raise EdgekitError(
                "--prune with --precision auto would prune once per precision; run `edgekit prune` first, "
                "then compile the pruned checkpoint with --precision auto"
            )
        validate_settings(config.prune, has_class_folders(config.val), flag="--prune")
        check_latency_target(config.prune, config.target)
    backend = choose_backend(config.target, config.precision, config.backend)
    if config.build_options is not None and config.build_options != BuildOptions():
        if backend.name != "tensorrt":
            raise EdgekitError(f"TensorRT options (--dla-core, --opt-level, …) do not apply to backend {backend.name}")
        check_for_target(config.target, config.precision, config.build_options)
    check_writable_destination(config.out, config.force)
    return backend
