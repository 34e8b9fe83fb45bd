"""Training data for `edgekit finetune`: a labelled image folder or the built-in Fashion-MNIST.

Unreadable files are found before training starts (counted, reported, skipped), so a broken JPEG
never kills an epoch halfway through, and a class left with no images is an error up front.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgekit.core.errors import EdgekitError, environment_problem
from edgekit.core.progress import QUIET, Progress
from edgekit.data import fashion_mnist
from edgekit.data.images import IMAGE_SUFFIXES, collect_images, read_image, read_labelled_folder

FASHION_MNIST = "fashion-mnist"
Sample = tuple[Any, int]  # (Path, or a uint8 greyscale array, class index or UNLABELLED)
UNLABELLED = -1


@dataclasses.dataclass
class LabelledImages:
    """A map-style torch dataset over (image, label) samples; `transform` turns a PIL image into a tensor."""

    samples: list[Sample]
    class_names: tuple[str, ...]
    unreadable: dict[str, str] = dataclasses.field(default_factory=dict)
    transform: Callable[[Image.Image], Any] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        source, label = self.samples[index]
        image = read_image(source) if isinstance(source, Path) else Image.fromarray(source).convert("RGB")
        return (self.transform(image) if self.transform else image), label

    def with_transform(self, transform: Callable[[Image.Image], Any]) -> LabelledImages:
        return dataclasses.replace(self, transform=transform)

    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.samples])


def _readable(path: Path) -> str | None:
    """None for a file PIL can verify, else why not. A full decode happens later, through `read_image`."""
    try:
        with Image.open(path) as image:
            image.verify()
        return None
    except OSError as exc:  # a damaged file, or the machine's problem (EMFILE, EIO) that stops the run
        if environment_problem(exc):
            raise
        return str(exc) or type(exc).__name__
    except (SyntaxError, ValueError, EOFError, IndexError, struct.error, Image.DecompressionBombError) as exc:
        # What PIL's header parsers raise for malformed data (UnidentifiedImageError is an OSError).
        return str(exc) or type(exc).__name__


def _readable_samples(samples: list[Sample], desc: str, progress: Progress) -> tuple[list[Sample], dict[str, str]]:
    kept, unreadable = [], {}
    for path, label in progress.bar(samples, desc=desc, total=len(samples), unit="img"):
        reason = _readable(path)
        if reason is None:
            kept.append((path, label))
        else:
            unreadable[str(path)] = reason
    return kept, unreadable


def folder_dataset(root: Path, progress: Progress = QUIET) -> LabelledImages:
    """A labelled folder (one sub-directory per class), with unreadable files set aside."""
    folder = read_labelled_folder(root)
    if len(folder.class_names) < 2:
        raise EdgekitError(f"{root} has a single class ({folder.class_names[0]}); a classifier needs at least two")
    samples, unreadable = _readable_samples(list(folder.samples), f"checking {root.name}", progress)
    counts = np.bincount([label for _, label in samples], minlength=len(folder.class_names))
    empty = [folder.class_names[i] for i, n in enumerate(counts) if n == 0]
    if empty:
        raise EdgekitError(
            f"{root}: class folder(s) {', '.join(empty)} hold no readable images "
            f"({len(unreadable)} unreadable file(s) in total); fix or remove them"
        )
    return LabelledImages(samples, folder.class_names, unreadable)


def unlabelled_folder(root: Path, class_names: tuple[str, ...], progress: Progress = QUIET) -> LabelledImages:
    """Every image under `root`, in any layout, with no label (-1): for training that needs only images
    (distillation). `class_names` are the model's, so batches mix with labelled ones."""
    if not root.is_dir():
        raise EdgekitError(f"{root} is not a directory of images")
    found = [(path, UNLABELLED) for path in collect_images([root])]
    samples, unreadable = _readable_samples(found, f"checking {root.name}", progress)
    if not samples:
        raise EdgekitError(
            f"{root} holds no readable images ({len(unreadable)} unreadable file(s)); suffixes read: "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    return LabelledImages(samples, class_names, unreadable)


def fashion_mnist_dataset(
    split: str, per_class: int, classes: Sequence[int], seed: int, root: Path | None = None
) -> LabelledImages:
    images, labels = fashion_mnist.load_split(split, root)
    chosen = fashion_mnist.stratified_indices(labels, per_class, tuple(classes), seed)
    remap = {c: i for i, c in enumerate(classes)}
    samples = [(images[i], remap[int(labels[i])]) for i in chosen]
    return LabelledImages(samples, tuple(fashion_mnist.CLASS_NAMES[c] for c in classes))


def stratified_split(dataset: LabelledImages, fraction: float, seed: int) -> tuple[LabelledImages, LabelledImages]:
    """(train, val) with `fraction` of every class in val (at least one image each), fixed seed."""
    rng = np.random.default_rng(seed)
    labels = dataset.labels()
    val_index: list[int] = []
    for label in range(len(dataset.class_names)):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < 2:
            raise EdgekitError(
                f"class {dataset.class_names[label]} has {len(members)} image(s); a train/val split needs at least 2"
            )
        val_index.extend(members[: max(1, round(len(members) * fraction))].tolist())
    chosen = set(val_index)
    train = [s for i, s in enumerate(dataset.samples) if i not in chosen]
    val = [dataset.samples[i] for i in sorted(chosen)]
    return (
        dataclasses.replace(dataset, samples=train),
        dataclasses.replace(dataset, samples=val, unreadable={}),
    )


def held_out(dataset: LabelledImages, fraction: float, seed: int) -> tuple[LabelledImages, LabelledImages]:
    """(rest, held out): `fraction` of the images (at least one) drawn with a fixed seed, for images without
    labels (`stratified_split` keeps every class's share)."""
    if len(dataset) < 2:
        raise EdgekitError(f"{len(dataset)} image(s): holding some out to choose the best epoch needs at least 2")
    order = np.random.default_rng(seed).permutation(len(dataset))
    chosen = set(order[: max(1, round(len(dataset) * fraction))].tolist())
    rest = [s for i, s in enumerate(dataset.samples) if i not in chosen]
    kept = [s for i, s in enumerate(dataset.samples) if i in chosen]
    return dataclasses.replace(dataset, samples=rest), dataclasses.replace(dataset, samples=kept, unreadable={})
