"""Training-time augmentation, from the preprocessing the model will be deployed with.

- "light" (the default, fine-tuning and recovery): random resized crops of 60-100 % of the image, flips,
  ±20 % brightness and contrast — the model learns the classes, not the augmentation.
- "strong": crops of 25-100 %, flips, stronger colour jitter, and mixup/cutmix on the batch
  (`loaders.MixBatch`), meant to stretch a small set when a teacher supplies the soft labels. In 3 recovery
  epochs at 48×48 it cost a point against "light" (`benchmarks/results/prune_recovery.md`), so it is
  offered, not the default: it needs the long schedules function-matching distillation is run with.
- "none": the evaluation transform (resize the short side, centre crop).
"""

from __future__ import annotations

from typing import Any

from edgekit.data.preprocess import PreprocessSpec

MIX = {"none": None, "light": None, "strong": "both"}  # loaders.MixBatch's mixing per augmentation


def eval_transform(spec: PreprocessSpec) -> Any:
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(spec.resize),
            transforms.CenterCrop(spec.crop),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )


def train_transform(spec: PreprocessSpec, augment: str) -> Any:
    from torchvision import transforms

    if augment == "none":
        return eval_transform(spec)
    if augment == "light":
        steps = [
            transforms.RandomResizedCrop(spec.crop, scale=(0.6, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(brightness=0.2, contrast=0.2),
        ]
    elif augment == "strong":
        steps = [
            transforms.RandomResizedCrop(spec.crop, scale=(0.25, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
        ]
    else:
        raise ValueError(f"unknown augmentation {augment!r}")
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])
