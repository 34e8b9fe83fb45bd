"""The one training loop, used by fine-tuning and by pruning recovery.

Everything in a step lives on the accelerator: the model (and teacher, hooks, adapters), the batch and its
targets, the loss and the running statistics. The step does not wait for the accelerator (FP16's gradient
scaler aside: it checks the gradients for infinities every step): loss and accuracy accumulate on it and
are read back every `REFRESH_STEPS` steps for the progress bar (images/s, device), and summed over the
torchrun processes at the end of the epoch. Validation counts correct images on each process and sums
them, so the best epoch is chosen on every image exactly once.

Each epoch reseeds the global generators (`epoch_seed`), so without loader workers a resumed run trains
exactly what the uninterrupted one would; loader workers are seeded when they start (persistent workers:
once per run), so with workers a resumed run's augmentation differs (not its order, sampler-seeded).
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from edgekit.core.progress import QUIET, Progress
from edgekit.train.accelerator import Accelerator
from edgekit.train.world import ONE_PROCESS, World

REFRESH_STEPS = 10  # how often the progress bar reads the running loss back (a device sync on CUDA)


SLOW_MOMENTUM = 0.1  # BatchNorm momentum below PyTorch's default: re-estimated after each epoch
PRECISE_BN_BATCHES = 25


class Objective(Protocol):
    modules: tuple[torch.nn.Module, ...]  # trained beside the model (feature adapters), on the accelerator

    def __call__(self, outputs: Any, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, the main logits) for the model's `outputs` on `images`."""


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, steps: int) -> Any:
    """The learning-rate schedule, stepped once per batch over `steps` batches."""
    steps = max(1, steps)
    if schedule == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=steps)
    if schedule == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The global generators' seed at the start of each epoch (dropout, and augmentation and mixing without
    loader workers): a resumed run draws what the uninterrupted one drew."""
    return (seed * 1_000_003 + epoch * 1009 + rank) % 2**63


@dataclasses.dataclass
class Accuracy:
    correct: int
    images: int

    @property
    def top1(self) -> float:
        return self.correct / max(self.images, 1)


class _Trained(torch.nn.Module):
    """The model and the objective's own trained modules as one module, so DDP reduces all their gradients."""

    def __init__(self, model: torch.nn.Module, extras: tuple[torch.nn.Module, ...]) -> None:
        super().__init__()
        self.model, self.extras = model, torch.nn.ModuleList(extras)

    def forward(self, images: torch.Tensor) -> Any:
        return self.model(images)


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        accelerator: Accelerator,
        world: World = ONE_PROCESS,
        seed: int = 0,
        progress: Progress = QUIET,
        train_mode: Callable[[torch.nn.Module], None] | None = None,
        sync_batchnorm: bool = False,
    ) -> None:
        """`model` and the objective's modules are placed on the accelerator here; `train_mode` puts the model
        in training mode (default: `model.train()`; fine-tuning keeps frozen blocks in eval)."""
        self.accelerator, self.world, self.seed = accelerator, world, seed
        self.model = accelerator.place(model)
        for module in objective.modules:
            accelerator.place(module)
        self.objective, self.optimizer, self.scheduler = objective, optimizer, scheduler
        self.progress = progress if world.main else QUIET
        self.train_mode = train_mode or (lambda m: m.train())
        self.scaler = accelerator.scaler()
        trained = _Trained(self.model, objective.modules)
        if world.distributed:
            if sync_batchnorm:
                trained = torch.nn.SyncBatchNorm.convert_sync_batchnorm(trained)
                self.model = trained.model
            ids = [accelerator.device.index] if accelerator.cuda else None
            self.forward: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(trained, device_ids=ids)
        else:
            self.forward = trained
        # loss × images, correct labelled images, labelled images, images: on the accelerator, read rarely.
        self.sums = torch.zeros(4, dtype=torch.float64, device=accelerator.device)
        self._settling_noted = False

    def step(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        """One optimisation step on a batch from the loader (CPU tensors; moved here)."""
        images = self.accelerator.inputs(images)
        targets = targets.to(self.accelerator.device, non_blocking=True)
        with self.accelerator.autocast():
            loss, logits = self.objective(self.forward(images), images, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.is_enabled():  # FP16: a step the scaler skipped (inf gradients) still advances the LR
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step\\(\\)` before", UserWarning)
                self.scheduler.step()
        else:
            self.scheduler.step()
        has_label = targets.sum(1) > 0
        self.sums[0] += loss.detach().double() * len(images)
        self.sums[1] += ((logits.argmax(1) == targets.argmax(1)) & has_label).sum()
        self.sums[2] += has_label.sum()
        self.sums[3] += len(images)

    def run_epoch(self, loader: torch.utils.data.DataLoader, epoch: int, epochs: int, desc: str) -> dict[str, Any]:
        """Train on every batch of `loader` once; the record of the epoch, summed over the processes."""
        seed = epoch_seed(self.seed, epoch, self.world.rank)
        torch.manual_seed(seed)  # and Python's and NumPy's, which mixing draws from without loader workers
        random.seed(seed)
        np.random.seed(seed % 2**32)
        sampler = loader.sampler
        if isinstance(sampler, torch.utils.data.DistributedSampler):
            sampler.set_epoch(epoch)
        self.train_mode(self.model)
        self.sums.zero_()
        device = str(self.accelerator.device)
        bar = self.progress.counter(len(loader), f"{desc} {epoch + 1}/{epochs}", "batch")
        started, shown = time.perf_counter(), 0
        for index, (images, targets) in enumerate(loader, 1):
            self.step(images, targets)
            if index % REFRESH_STEPS == 0 or index == len(loader):
                loss, correct, labelled, seen = self.sums.tolist()
                rate = seen * self.world.size / max(time.perf_counter() - started, 1e-9)
                stats = {"loss": f"{loss / seen:.3f}", "img/s": f"{rate:.1f}", "on": device}
                if labelled:
                    stats["acc"] = f"{correct / labelled:.1%}"
                bar.update(index - shown, **stats)
                shown = index
        bar.close()
        seconds = time.perf_counter() - started
        self._settle_slow_batchnorm(loader)
        loss, correct, labelled, seen = self.world.sum(self.sums.clone()).tolist()
        return {
            "epoch": epoch + 1,
            "train_loss": loss / max(seen, 1),
            "train_top1": correct / labelled if labelled else None,
            "images_per_s": seen / max(seconds, 1e-9),
            "seconds": seconds,
        }

    def _settle_slow_batchnorm(self, loader: torch.utils.data.DataLoader) -> None:
        """Re-estimate the running statistics of trained BatchNorm layers whose momentum is below PyTorch's 0.1
        (MobileNetV3's 0.01, tuned for hundreds of ImageNet epochs) from `PRECISE_BN_BATCHES` training batches
        (PreciseBN): after a fine-tuning epoch of a few hundred steps their running averages still describe
        the weights of many steps ago, and the model evaluates at chance while its training loss falls
        (measured: MobileNetV3-Large from scratch, 10 classes, val top-1 10.0 % for 8 epochs). Other layers,
        frozen ones included, keep their statistics."""
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
        slow = [m for m in norms if m.track_running_stats and m.momentum is not None and m.momentum < SLOW_MOMENTUM]
        if not slow:
            return
        if not self._settling_noted:
            self._settling_noted = True
            self.progress.note(
                f"note: {len(slow)} BatchNorm layer(s) average slowly (momentum {slow[0].momentum:g}); their "
                f"statistics are re-estimated on {PRECISE_BN_BATCHES} training batches after each epoch"
            )
        kept = [m for m in norms if m not in slow]
        momenta = [m.momentum for m in slow]
        for norm in slow:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the batches below
        for norm in kept:
            norm.eval()
        try:
            with torch.no_grad(), self.accelerator.autocast():
                for _, (images, _targets) in zip(range(PRECISE_BN_BATCHES), loader):
                    self.model(self.accelerator.inputs(images))
        finally:
            for norm, momentum in zip(slow, momenta):
                norm.momentum = momentum
            for norm in kept:
                norm.train()
        if self.world.distributed:  # every process keeps the average over all of them
            for norm in slow:
                for buffer in (norm.running_mean, norm.running_var):
                    buffer.copy_(self.world.sum(buffer.clone()) / self.world.size)

    def evaluate(self, loader: torch.utils.data.DataLoader, reference: torch.nn.Module | None = None) -> Accuracy:
        """Top-1 over every image of `loader`'s dataset (summed over the processes), in FP32: against the
        labels, or against `reference`'s top-1 (agreement with the teacher, where images have no labels)."""
        self.model.eval()
        counts = torch.zeros(2, dtype=torch.float64, device=self.accelerator.device)
        with torch.no_grad():
            for images, labels in loader:
                images = self.accelerator.inputs(images)
                predicted = self.model(images).argmax(1)
                expected = reference(images).argmax(1) if reference is not None else labels.to(predicted.device)
                counts[0] += (predicted == expected).sum()
                counts[1] += len(predicted)
        correct, images = self.world.sum(counts).tolist()
        return Accuracy(int(correct), int(images))

    def fit(
        self,
        loader: torch.utils.data.DataLoader,
        epochs: int,
        desc: str,
        select: Callable[[], Accuracy] | None = None,
        first_epoch: int = 0,
        best: float = -1.0,
        on_epoch: Callable[[dict[str, Any], bool], None] | None = None,
        keep_best: bool = False,
    ) -> tuple[list[dict[str, Any]], float]:
        """Epochs `first_epoch`..`epochs - 1`; after each, `select()` scores the model (the best epoch is the
        one it scores highest) and `on_epoch(record, improved)` runs (fine-tuning saves checkpoints there).
        `keep_best`: with `select`, the model ends with the weights of its best epoch, where the weights it
        came in with count as epoch 0. Returns the epochs' records and the best score."""
        history: list[dict[str, Any]] = []
        best_state = None
        if keep_best and select is not None:
            before = select()
            best, best_state = before.top1, copy.deepcopy(self.model.state_dict())
            history.append({"epoch": 0, "val_top1": before.top1, "val_images": before.images})
        for epoch in range(first_epoch, epochs):
            record = self.run_epoch(loader, epoch, epochs, desc)
            improved = False
            if select is not None:
                scored = select()
                record.update(val_top1=scored.top1, val_images=scored.images)
                improved = scored.top1 > best
                best = max(best, scored.top1)
                if improved and keep_best:
                    best_state = copy.deepcopy(self.model.state_dict())
            history.append(record)
            if on_epoch is not None:
                on_epoch(record, improved)
        if best_state is not None:
            self.model.load_state_dict(best_state)
            kept = max((r for r in history if "val_top1" in r), key=lambda r: (r["val_top1"], -r["epoch"]))
            kept["kept"] = True
        self.model.eval()
        return history, best
