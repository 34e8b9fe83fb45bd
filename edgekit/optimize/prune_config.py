"""What to prune and how, validated before anything slow (kept free of torch imports for that reason).

Shared by `edgekit prune` and the pruning stage of `edgekit compile --prune`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgekit.backends.base import Backend
from edgekit.core.errors import EdgekitError
from edgekit.core.files import writable_directory_problem
from edgekit.data.images import has_class_folders
from edgekit.measure.host import host_problem
from edgekit.targets import Target
from edgekit.train.settings import AUGMENTATIONS, DEFAULT_RECOVER_AUGMENT, LR_SCHEDULES, TrainingSettings

IMPORTANCES = ("l1", "l2", "taylor")
SCOPES = ("uniform", "global")
SPARSITY_PATTERNS = ("2:4",)
DEFAULT_RECOVER_EPOCHS = 3


@dataclasses.dataclass(frozen=True)
class PruneSettings:
    ratio: float | None = None  # share of each layer's channels removed
    target_macs: float | None = None  # prune until the model needs at most this many MACs per image
    target_latency_ms: float | None = None  # prune until FP32 batch-1 latency on the target's backend is this
    importance: str = "l2"
    scope: str = "uniform"  # uniform: every layer loses `ratio` of its channels; global: ranked across layers
    steps: int = 1  # reach the ratio in this many pruning steps, with the recovery epochs shared between them
    round_to: int = 8  # channel counts stay multiples of this (tensor-core and SIMD friendly)
    max_ratio: float = 0.8  # the most a target-driven search may remove from any layer
    sparsity: str | None = None  # "2:4"
    recover_data: Path | None = None  # labelled image folder for recovery fine-tuning
    recover_unlabelled: Path | None = None  # images without labels, for distillation (any layout)
    recover_augment: str = DEFAULT_RECOVER_AUGMENT
    recover_epochs: int | None = None  # None: DEFAULT_RECOVER_EPOCHS when recover_data is given
    recover_lr: float = 0.01
    lr_schedule: str = "cosine"
    distill: bool | None = None  # distil from the unpruned model during recovery; None: yes, when recovering
    distill_temperature: float = 4.0
    feature_distill: float = 0.0  # weight of the feature term on the last three stages' outputs (0: logits only)
    search_drop_pts: float | None = None  # search mode: the most top-1 points below the original model
    search_step: float = 0.1  # the ratios a search tries: multiples of this up to max_ratio
    batch_size: int = 32
    seed: int = 0
    # where recovery trains: --accelerator, --amp, --workers
    training: TrainingSettings = dataclasses.field(default_factory=TrainingSettings)

    @property
    def mode(self) -> str:
        if self.ratio is not None:
            return "ratio"
        if self.target_macs is not None:
            return "target-macs"
        if self.target_latency_ms is not None:
            return "target-latency"
        if self.search_drop_pts is not None:
            return "search"
        return "none"

    @property
    def distilling(self) -> bool:
        """Distillation is the default recovery: benchmarks/results/prune_methods.md measured it against
        cross-entropy alone at the same MACs and recovery budget."""
        return self.distill if self.distill is not None else self.recovering

    @property
    def recovering(self) -> bool:
        """Whether there are images to recover on (labelled, unlabelled, or both)."""
        return self.recover_data is not None or self.recover_unlabelled is not None

    @property
    def epochs(self) -> int:
        if self.recover_epochs is not None:
            return self.recover_epochs
        return DEFAULT_RECOVER_EPOCHS if self.recovering else 0

    @property
    def requested(self) -> bool:
        """Whether any pruning option was given: any one means a pruning stage (validation names what is
        missing, e.g. a ratio)."""
        return self != PruneSettings()

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def validate_settings(settings: PruneSettings, has_val: bool) -> None:
    """Every mistake in the pruning options, caught before the model is loaded."""
    chosen = [v is not None for v in (settings.ratio, settings.target_macs, settings.target_latency_ms)]
    if sum(chosen) > 1:
        raise EdgekitError("give one of --prune-ratio, --target-macs, --target-latency, not several")
    if sum(chosen) == 0 and settings.sparsity is None and settings.search_drop_pts is None:
        raise EdgekitError(
            "nothing to prune: give --prune-ratio R, --target-macs M, --target-latency MS, --sparsity 2:4, or "
            "--max-accuracy-drop P with --recover-data DIR to search the ratio"
        )
    if settings.mode == "search":
        if settings.recover_data is None:
            raise EdgekitError(
                "searching the pruning ratio for --max-accuracy-drop retrains every candidate: pass --recover-data "
                "DIR (labelled training images), or give --prune-ratio R to prune once and check the drop"
            )
        if not 0 < settings.search_step < settings.max_ratio:
            raise EdgekitError("--search-step must be positive and below --max-ratio")
    if settings.ratio is not None and not 0 < settings.ratio < 1:
        raise EdgekitError("--prune-ratio is the share of channels removed and must be between 0 and 1 (exclusive)")
    if settings.target_macs is not None and settings.target_macs <= 0:
        raise EdgekitError("--target-macs must be positive (e.g. 600M or 0.6G)")
    if settings.target_latency_ms is not None and settings.target_latency_ms <= 0:
        raise EdgekitError("--target-latency is in milliseconds and must be positive")
    if not 0 < settings.max_ratio < 1:
        raise EdgekitError("--max-ratio must be between 0 and 1 (exclusive)")
    if settings.importance not in IMPORTANCES:
        raise EdgekitError(f"--importance must be one of {', '.join(IMPORTANCES)}")
    if settings.scope not in SCOPES:
        raise EdgekitError(f"--scope must be one of {', '.join(SCOPES)}")
    if settings.steps < 1:
        raise EdgekitError("--steps must be at least 1")
    if settings.steps > 1 and settings.mode not in ("ratio", "search"):
        raise EdgekitError("--steps N prunes a ratio in N steps; MACs and latency targets already prune in steps")
    if settings.steps > 1 and settings.epochs < settings.steps:
        raise EdgekitError(
            f"--steps {settings.steps} recovers between steps: give --recover-data DIR and at least "
            f"{settings.steps} --recover-epochs (they are shared between the steps)"
        )
    if settings.distill_temperature <= 0:
        raise EdgekitError("--temperature must be positive (4 is common)")
    if settings.lr_schedule not in LR_SCHEDULES:
        raise EdgekitError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}")
    if settings.feature_distill < 0:
        raise EdgekitError("--feature-distill is a loss weight and cannot be negative (0 turns it off)")
    if settings.feature_distill > 0 and settings.distill is False:
        raise EdgekitError("--feature-distill distils from the unpruned model: it does not go with --no-distill")
    if settings.round_to < 1:
        raise EdgekitError("--round-to must be at least 1")
    if settings.sparsity is not None and settings.sparsity not in SPARSITY_PATTERNS:
        raise EdgekitError(f"--sparsity {settings.sparsity} is not supported; edgekit applies {SPARSITY_PATTERNS[0]}")
    if settings.recover_data is not None and not settings.recover_data.is_dir():
        raise EdgekitError(f"--recover-data {settings.recover_data} is not a directory of class sub-directories")
    if settings.recover_unlabelled is not None and not settings.recover_unlabelled.is_dir():
        raise EdgekitError(f"--recover-unlabelled {settings.recover_unlabelled} is not a directory of images")
    if settings.recover_unlabelled is not None and settings.distill is False:
        raise EdgekitError(
            "--recover-unlabelled images teach through distillation from the unpruned model: drop --no-distill"
        )
    if settings.recover_epochs is not None and settings.recover_epochs > 0 and not settings.recovering:
        raise EdgekitError(
            "--recover-epochs needs images to recover on: --recover-data DIR (labelled) and/or --recover-unlabelled DIR"
        )
    if settings.distill is True and not settings.recovering:
        raise EdgekitError("--distill happens during recovery: pass --recover-data DIR or --recover-unlabelled DIR")
    if settings.recover_augment not in AUGMENTATIONS:
        raise EdgekitError(f"--recover-augment must be one of {', '.join(AUGMENTATIONS)}")
    settings.training.validate()
    if settings.recovering:  # the accelerator exists (a missing GPU is said now, not after pruning)
        from edgekit.train.accelerator import resolve

        resolve(settings.training)
    if settings.importance == "taylor" and settings.recover_data is None and not has_val:
        raise EdgekitError("--importance taylor needs labelled images: pass --recover-data DIR or --val DIR")
    if settings.recover_lr <= 0 or settings.batch_size < 1:
        raise EdgekitError("--recover-lr must be positive and the batch size at least 1")


def check_latency_target(settings: PruneSettings, target: Target, backend: type[Backend]) -> None:
    """Latency targets are measured with the target's FP32 backend on this host: only where this host is the device."""
    problem = host_problem(target, backend) if settings.target_latency_ms is not None else None
    if problem:
        raise EdgekitError(
            f"--target-latency for {target.name} needs latency measured on the device, which this host is not "
            f"({problem}); measure it on the board with --device NAME (`edgekit devices add`), or use --target-macs "
            "(MACs are the proxy here)"
        )


@dataclasses.dataclass(frozen=True)
class PruneConfig:
    model: Path
    out: Path
    settings: PruneSettings
    target: Target | str | None = None  # a Target, name or TOML path; None: this host's (resolved by run_prune)
    val: Path | None = None  # labelled images for before/after accuracy (else part of --recover-data)
    max_accuracy_drop: float | None = None  # top-1 points the pruned model may lose on the validation images
    threads: int | None = None
    trust_pickle: bool = False
    arch: str | None = None  # torchvision builder name; None: recorded in the checkpoint, else inferred
    force: bool = False
    class_names: tuple[str, ...] | None = None  # --classes: names for a checkpoint without them
    resize: int | None = None  # preprocessing overrides, for a checkpoint that does not record its own
    crop: int | None = None


def validate(config: PruneConfig, fp32_backend: type[Backend], measured_elsewhere: bool = False) -> None:
    """`fp32_backend`: the target's FP32 backend, which measures latency targets (on this host, unless they
    are `measured_elsewhere`: on the boards)."""
    if not config.model.is_file():
        raise EdgekitError(f"{config.model} does not exist or is not a file")
    if config.model.suffix.lower() == ".onnx":
        raise EdgekitError("edgekit prunes PyTorch checkpoints; an ONNX file cannot be pruned")
    if config.arch is not None:
        from edgekit.model.families import check_arch

        check_arch(config.arch)
    if config.val is not None and not config.val.is_dir():
        raise EdgekitError(f"--val {config.val} is not a directory")
    validate_settings(config.settings, has_class_folders(config.val))
    if not measured_elsewhere:
        check_latency_target(config.settings, config.target, fp32_backend)
    if config.max_accuracy_drop is not None and config.val is None and config.settings.recover_data is None:
        raise EdgekitError("--max-accuracy-drop needs labelled images: pass --val DIR or --recover-data DIR")
    if config.out.is_dir():
        raise EdgekitError(f"cannot write {config.out}: it is a directory; give a file name such as pruned.pt")
    if config.out.exists() and not config.force:
        raise EdgekitError(f"{config.out} exists; pass --force to replace it")
    problem = writable_directory_problem(config.out.parent, must_exist=True)
    if problem:
        raise EdgekitError(f"cannot write {config.out}: {problem}")
