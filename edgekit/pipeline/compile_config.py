"""Frozen, validated configs: every check that can fail fast runs before any slow work."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.backends.base import Converter
from edgekit.backends.converters import CONVERTERS, choose_converter, usable_converters
from edgekit.core.errors import EdgekitError
from edgekit.data.images import has_class_folders
from edgekit.measure.host import resolve_target
from edgekit.optimize.prune_config import PruneSettings, check_latency_target, validate_settings
from edgekit.runtime.bundle import check_writable_destination
from edgekit.targets import Target


@dataclasses.dataclass(frozen=True)
class CompileConfig:
    model: Path
    target: Target | str | None = None  # a Target, a target name or TOML path; None: this host's (see `resolve`)
    out: Path | None = None  # None: <model stem>-<target>-<precision> in the working directory
    precision: str = "fp32"
    backend: str | None = None  # None: the target's first available backend
    force: bool = False
    class_names: tuple[str, ...] | None = None
    transform_input: bool | None = None  # None: from the checkpoint, else on
    arch: str | None = None  # torchvision builder name; None: recorded in the checkpoint, else inferred
    resize: int | None = None  # preprocessing overrides
    crop: int | None = None
    preprocess: str | None = None  # "exact" / "fast" decode (PreprocessSpec.decode); None: the checkpoint's, else exact
    normalise_in_model: bool = False  # the bundle's model takes uint8 NHWC pixels (PreprocessSpec.normalise_in_model)
    val: Path | None = None  # images for the parity check (and accuracy, when labelled)
    parity_images: int = 200
    trust_pickle: bool = False
    threads: int | None = None  # None: the target's
    target_from_host: bool = False  # the user gave no --target: say which one was picked
    calib: Path | None = None  # INT8 calibration images (labels not needed)
    calib_size: int = 256
    method: str | None = None  # INT8 calibration method (None: each quantizer's default, then the guard's rungs)
    max_accuracy_drop: float | None = None  # top-1 points the quantized model may lose vs FP32
    min_agreement: float = 0.99  # the accuracy guard: top-1 agreement with FP32 on held-out images (0: off)
    prune: PruneSettings | None = None  # a pruning stage before export (`--prune` and friends)
    # The backend's own options by name (TensorRT: dla_core, opt_level, ...); None values are "not given".
    backend_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_onnx(self) -> bool:
        return self.model.suffix.lower() == ".onnx"


def resolve(config: CompileConfig) -> CompileConfig:
    """The config with its defaults decided: the target (this host's when none is given) and the output path.
    The CLI and the Python API get the same defaults because they are decided here."""
    target = config.target
    resolved = dataclasses.replace(
        config, target=resolve_target(target), target_from_host=config.target_from_host or target is None
    )
    if resolved.out is None:
        assert isinstance(resolved.target, Target)
        name = f"{config.model.stem}-{resolved.target.name}-{config.precision}"
        resolved = dataclasses.replace(resolved, out=Path(name))
    return resolved


def validate(config: CompileConfig) -> tuple[type[Converter], Any]:
    """Check everything that does not need the model loaded (`config` resolved); returns the chosen backend's
    converter and its parsed options."""
    assert isinstance(config.target, Target) and config.out is not None, "validate a resolved config"
    if not config.model.is_file():
        raise EdgekitError(f"{config.model} does not exist or is not a file")
    if config.is_onnx and config.transform_input is not None:
        raise EdgekitError(
            "--transform-input/--no-transform-input apply to PyTorch checkpoints; an ONNX file has its own"
        )
    if config.arch is not None:
        if config.is_onnx:
            raise EdgekitError("--arch names the architecture of a PyTorch checkpoint; an ONNX file carries its own")
        from edgekit.model.families import check_arch

        check_arch(config.arch)
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
            raise EdgekitError("--prune-ratio needs a PyTorch checkpoint; an ONNX file cannot be pruned")
        if config.precision == "auto":
            raise EdgekitError(
                "pruning with --precision auto would prune once per precision; run `edgekit prune` first, "
                "then compile the pruned checkpoint with --precision auto"
            )
        validate_settings(config.prune, has_class_folders(config.val))
        check_latency_target(config.prune, config.target, choose_converter(config.target, "fp32", None).backend)
    if not 0 <= config.min_agreement <= 1:
        raise EdgekitError("--min-agreement is a percentage between 0 and 100")
    candidates(config)  # errors naming why no backend can build this precision here
    converter = choose_converter(config.target, config.precision, config.backend)
    options = converter.backend.parse_options(config.backend_options)
    converter.check_options(config.target, config.precision, options)
    check_writable_destination(config.out, config.force)
    return converter, options


def candidates(config: CompileConfig) -> list[type[Converter]]:
    """The backends compile builds and measures (`config` resolved): the one the user named (or the one
    their engine options belong to), else every one the target lists for the precision that works here and
    takes the --method given."""
    assert isinstance(config.target, Target)
    given_options = any(value is not None for value in config.backend_options.values())
    if config.backend is not None or given_options:
        converter = choose_converter(config.target, config.precision, config.backend)
        found = [converter]
    else:
        found = usable_converters(config.target, config.precision)
    if config.method is not None and config.precision == "int8":
        taking = [c for c in found if config.method in c.calibration_methods("int8")]
        if not taking:
            offered = "; ".join(f"{c.backend.name}: {', '.join(c.calibration_methods('int8'))}" for c in found)
            raise EdgekitError(f"--method {config.method} is not a calibration method of this target's INT8 "
                               f"backends ({offered})")  # fmt: skip
        found = taking
    if config.normalise_in_model:
        folding = [c for c in found if c.folds_normalisation()]
        if not folding:
            names = ", ".join(c.backend.name for c in found)
            able = ", ".join(name for name, c in CONVERTERS.items() if c.folds_normalisation())
            raise EdgekitError(
                f"--normalise-in-model: the {names} backend cannot take pixels (only {able} models can; a GPU "
                "backend with preprocessing kernels already normalises on the GPU): drop the flag or pick one of "
                "those with --backend"
            )
        found = folding
    return found
