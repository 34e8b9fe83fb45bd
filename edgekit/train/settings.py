"""Where and how training runs, as the user asked for it; validated before anything slow, without torch.

Words: in edgekit a *device* is a board that runs bundles (`edgekit devices`, `--device NAME` over SSH).
The hardware this machine trains on is the *accelerator*: `--accelerator auto|cpu|cuda|cuda:N`, so no flag
means two things. `accelerator.resolve` turns these settings into the torch device actually used.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from edgekit.core.errors import EdgekitError

AMP_MODES = ("auto", "off", "bf16", "fp16")
LR_SCHEDULES = ("cosine", "onecycle", "constant")  # per batch
AUGMENTATIONS = ("none", "light", "strong")  # train/augment.py says what each does
DEFAULT_RECOVER_AUGMENT = "light"  # benchmarks/results/prune_recovery.md: "strong" did worse in 3 epochs
MAX_WORKERS = 64
_ACCELERATOR = re.compile(r"auto|cpu|cuda(:\d{1,3})?")


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    accelerator: str = "auto"  # auto: the GPU when one is visible, else the CPU
    amp: str = "auto"  # autocast mixed precision: auto (see accelerator.resolve), off, bf16, fp16
    workers: int | None = None  # DataLoader worker processes per training process; None: from the cores
    channels_last: bool | None = None  # None: on (measured faster on CUDA and CPUs); accelerator.resolve
    sync_batchnorm: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch

    def validate(self) -> None:
        if not _ACCELERATOR.fullmatch(self.accelerator):
            raise EdgekitError(
                f"--accelerator {self.accelerator!r} is not one of auto, cpu, cuda, cuda:N (the GPU index); "
                "boards over SSH are --device NAME"
            )
        if self.amp not in AMP_MODES:
            raise EdgekitError(f"--amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")
        if self.amp == "fp16" and self.accelerator == "cpu":
            raise EdgekitError("--amp fp16 trains with a gradient scaler on CUDA GPUs; on a CPU use --amp bf16 or off")
        if self.workers is not None and not 0 <= self.workers <= MAX_WORKERS:
            raise EdgekitError(f"--workers must be within 0..{MAX_WORKERS} (0: load images in the training process)")
        if self.sync_batchnorm and self.accelerator == "cpu":
            raise EdgekitError("--sync-batchnorm synchronises BatchNorm across GPUs; PyTorch has it for CUDA only")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
