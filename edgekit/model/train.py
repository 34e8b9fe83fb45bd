"""Training a GoogLeNet on a labelled image folder and saving an edgekit checkpoint.

This is the small, honest trainer the demo and the test fixtures use to get a GoogLeNet trained on
real images (no ImageNet weights can be downloaded here). The checkpoint it writes records what
`edgekit compile` needs beside the weights: class names, transform_input and preprocessing.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from edgekit.data.preprocess import PreprocessSpec
from edgekit.model.googlenet import build_googlenet, ensure_weights_initialised
from edgekit.progress import QUIET, Progress

AUX_LOSS_WEIGHT = 0.3  # the GoogLeNet paper's weight for each auxiliary classifier


@dataclasses.dataclass(frozen=True)
class TrainRecipe:
    epochs: int = 2
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    seed: int = 0
    threads: int = 0


def _tensors(folder: Path, spec: PreprocessSpec, train: bool) -> tuple[Any, list[str]]:
    from torchvision import datasets, transforms

    steps: list[Any] = [transforms.Resize(spec.resize)]
    steps += (
        [transforms.RandomCrop(spec.crop), transforms.RandomHorizontalFlip()]
        if train
        else [transforms.CenterCrop(spec.crop)]
    )
    steps += [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
    dataset = datasets.ImageFolder(str(folder), transform=transforms.Compose(steps))
    return dataset, list(dataset.classes)


def train_classifier(
    train_dir: Path,
    out: Path,
    spec: PreprocessSpec,
    recipe: TrainRecipe = TrainRecipe(),
    transform_input: bool = True,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """Train from scratch with aux heads (loss weight 0.3), cosine LR; write the checkpoint atomically."""
    torch.manual_seed(recipe.seed)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    dataset, classes = _tensors(train_dir, spec, train=True)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=recipe.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(recipe.seed),
    )
    model = build_googlenet(len(classes), transform_input, aux_logits=True)
    ensure_weights_initialised(model)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=True,
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, total_steps=recipe.epochs * len(loader)
    )
    model.train()
    correct = seen = 0
    for epoch in range(recipe.epochs):
        correct = seen = 0
        for images, labels in progress.bar(
            loader, desc=f"epoch {epoch + 1}/{recipe.epochs}", total=len(loader), unit="batch"
        ):
            outputs = model(images)
            loss = F.cross_entropy(outputs.logits, labels, label_smoothing=recipe.label_smoothing)
            for aux in (outputs.aux_logits1, outputs.aux_logits2):
                loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(aux, labels, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            correct += int((outputs.logits.argmax(1) == labels).sum())
            seen += len(labels)
        progress.note(f"epoch {epoch + 1}/{recipe.epochs}: train top-1 {correct / max(seen, 1):.1%}")
    checkpoint = {
        "model_state_dict": model.state_dict(),
        "classes": classes,
        "transform_input": transform_input,
        "preprocessing": spec.to_dict(),
        "epoch": recipe.epochs,
        "recipe": dataclasses.asdict(recipe),
        "train_top1": correct / max(seen, 1),
    }
    save_checkpoint(checkpoint, out)
    return checkpoint


def save_checkpoint(checkpoint: dict[str, Any], out: Path) -> None:
    """torch.save to a temp file beside `out`, then rename: never a half-written checkpoint."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(handle)
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
