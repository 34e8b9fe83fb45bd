"""Batches that keep the accelerator busy: decoding and augmentation in DataLoader worker processes (seeded
per worker), pinned memory on CUDA, persistent workers, and each torchrun process reading its own share.

Training batches carry soft targets (N × classes): a one-hot row per labelled image, an all-zero row for an
unlabelled one (distillation needs only the image), and mixed rows under mixup/cutmix. torchvision's
MixUp/CutMix take integer labels only, so unlabelled images cannot go through them; `MixBatch` mixes
the same way (Beta(α, α), the batch rolled by one as torchvision does) on the soft rows instead.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sized
from typing import Any

import numpy as np
import torch

from edgekit.core.threads import resolve_threads
from edgekit.train.accelerator import Accelerator
from edgekit.train.world import World

MAX_DEFAULT_WORKERS = 8
MIX_ALPHA = {"mixup": 0.2, "cutmix": 1.0}  # torchvision's classification reference recipe's values


def default_workers(accelerator: Accelerator, world: World) -> int:
    """Loader worker processes per training process: on CUDA, every core this process's share leaves (up to
    8); on a CPU the cores compute, so a quarter of them decode (none on a 2-core machine)."""
    cores = max(1, resolve_threads(0) // world.local_size)
    if accelerator.cuda:
        return min(MAX_DEFAULT_WORKERS, cores - 1)
    return min(MAX_DEFAULT_WORKERS, cores // 4)


def seed_worker(_worker_id: int) -> None:
    """Python's and NumPy's generators per worker, from the seed torch gave it (itself from the loader's
    seeded generator), so augmentations that use them differ between workers and repeat between runs."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class MixBatch:
    """A collate function: stack the samples, one-hot their labels (-1: unlabelled → a zero row), and with
    `mix` ("mixup", "cutmix" or "both": one of the two per batch) mix each image with its neighbour."""

    def __init__(self, classes: int, mix: str | None = None) -> None:
        self.classes, self.mix = classes, mix

    def __call__(self, samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([image for image, _ in samples])
        labels = torch.tensor([label for _, label in samples], dtype=torch.long)
        targets = torch.zeros(len(samples), self.classes)
        labelled = labels >= 0
        targets[labelled, labels[labelled]] = 1.0
        if self.mix is None or len(samples) < 2:
            return images, targets
        kind = self.mix if self.mix != "both" else random.choice(("mixup", "cutmix"))
        lam = float(np.random.beta(MIX_ALPHA[kind], MIX_ALPHA[kind]))
        rolled = images.roll(1, 0)
        if kind == "mixup":
            images = images * lam + rolled * (1 - lam)
        else:
            height, width = images.shape[-2:]
            cut_h, cut_w = int(height * math.sqrt(1 - lam)), int(width * math.sqrt(1 - lam))
            y, x = random.randrange(height), random.randrange(width)
            top, bottom = max(y - cut_h // 2, 0), min(y + cut_h // 2, height)
            left, right = max(x - cut_w // 2, 0), min(x + cut_w // 2, width)
            images = images.clone()
            images[..., top:bottom, left:right] = rolled[..., top:bottom, left:right]
            lam = 1 - (bottom - top) * (right - left) / (height * width)
        both_labelled = labelled & labelled.roll(1, 0)  # a label half unknown is no label: the teacher's alone
        targets = (targets * lam + targets.roll(1, 0) * (1 - lam)) * both_labelled[:, None]
        return images, targets


def train_loader(
    dataset: Any,
    classes: int,
    batch_size: int,
    seed: int,
    world: World,
    accelerator: Accelerator,
    workers: int | None = None,
    mix: str | None = None,
) -> torch.utils.data.DataLoader:
    """Shuffled batches of `batch_size` per process. The sampler is a DistributedSampler for one process too,
    so N processes at batch B see exactly the images one process sees at batch N×B (the global batch)."""
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world.size, rank=world.rank, seed=seed)
    workers = default_workers(accelerator, world) if workers is None else workers
    per_process = math.ceil(len(dataset) / world.size)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=MixBatch(classes, mix),
        drop_last=per_process > batch_size,  # a last batch of one would break BatchNorm
        num_workers=workers,
        pin_memory=accelerator.cuda,
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed * 1000 + world.rank),
    )


def eval_loader(
    dataset: Sized, world: World, accelerator: Accelerator, workers: int | None = None, batch_size: int = 64
) -> torch.utils.data.DataLoader:
    """Every image once across the processes: process r reads images r, r+N, … (no padding, so no image is
    counted twice when the counts are summed)."""
    share = torch.utils.data.Subset(dataset, range(world.rank, len(dataset), world.size))  # type: ignore[arg-type]
    workers = default_workers(accelerator, world) if workers is None else workers
    return torch.utils.data.DataLoader(
        share,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=accelerator.cuda,
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker,
    )
