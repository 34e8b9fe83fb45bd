"""Running a model and its FP32 reference over the same real images: parity and accuracy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.data.batches import ImageBatch, load_images, sample
from edgekit.data.images import LabelledFolder, collect_images, has_class_folders, read_labelled_folder
from edgekit.data.preprocess import PreprocessSpec

RunFn = Callable[[np.ndarray], np.ndarray]
MAX_CONFUSION_CLASSES = 100


def run_batched(
    run: RunFn, inputs: np.ndarray, batch_size: int, progress: Progress = QUIET, desc: str = ""
) -> np.ndarray:
    starts = range(0, len(inputs), batch_size)
    chunks = [run(inputs[s : s + batch_size]) for s in progress.bar(starts, desc=desc, total=len(starts), unit="batch")]
    return np.concatenate(chunks).reshape(len(inputs), -1)


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max abs difference of the raw outputs and top-1 agreement."""
    return {
        "max_abs_diff": float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64)))),
        "top1_agreement": float(np.mean(reference.argmax(1) == candidate.argmax(1))),
    }


def class_index_map(folder: LabelledFolder, class_names: Sequence[str]) -> list[int]:
    """For each sub-directory of a labelled folder, the model's class index it stands for.

    Names are matched exactly; a model without real class names (class_0..N-1) falls back to
    ImageFolder's convention, sorted sub-directory order = class index.
    """
    lookup = {name: i for i, name in enumerate(class_names)}
    if all(name in lookup for name in folder.class_names):
        return [lookup[name] for name in folder.class_names]
    generated = all(name == f"class_{i}" for i, name in enumerate(class_names))
    if generated and len(folder.class_names) == len(class_names):
        return list(range(len(class_names)))
    unknown = [name for name in folder.class_names if name not in lookup]
    raise EdgekitError(
        f"{folder.root}: sub-directories {', '.join(unknown[:5])} are not classes of this model "
        f"({', '.join(class_names[:10])}); name the sub-directories after the model's classes"
    )


@dataclasses.dataclass
class EvalSet:
    """Preprocessed images, with labels (model class indices) when the folder is labelled."""

    batch: ImageBatch
    labels: np.ndarray | None
    source: str


def load_eval_set(
    folder: Path,
    class_names: Sequence[str],
    spec: PreprocessSpec,
    limit: int | None,
    progress: Progress = QUIET,
) -> EvalSet:
    """Images from `folder`: class sub-directories give labels, a flat folder gives images only."""
    if not folder.is_dir():
        raise EdgekitError(f"{folder} is not a directory")
    if has_class_folders(folder):
        labelled = read_labelled_folder(folder)
        mapping = class_index_map(labelled, class_names)
        chosen = sample(labelled.samples, limit)
        batch = load_images([file for file, _ in chosen], spec, progress)
        label_of = {file: mapping[label] for file, label in chosen}
        labels = np.array([label_of[file] for file in batch.files])
        return EvalSet(batch, labels, f"labelled images from {folder}")
    files = collect_images([folder])
    if not files:
        raise EdgekitError(f"{folder} holds no image files")
    return EvalSet(load_images(sample(files, limit), spec, progress), None, f"images from {folder}")


def score(
    predictions: dict[str, np.ndarray], labels: np.ndarray, class_names: Sequence[str], reference: str
) -> dict[str, Any]:
    """Top-1, per-class top-1 and the confusion matrix of each model's predictions; agreement with `reference`."""
    models = {}
    for name, predicted in predictions.items():
        per_class = {class_names[c]: float(np.mean(predicted[labels == c] == c)) for c in sorted(set(labels.tolist()))}
        models[name] = {"top1": float(np.mean(predicted == labels)), "per_class_top1": per_class}
        if len(class_names) <= MAX_CONFUSION_CLASSES:  # 1,000 ImageNet classes would be a million numbers
            confusion = np.zeros((len(class_names), len(class_names)), dtype=np.int64)  # [true class][predicted]
            np.add.at(confusion, (labels, predicted), 1)
            models[name]["confusion"] = confusion.tolist()
        if name != reference:
            models[name]["top1_agreement_with_reference"] = float(np.mean(predicted == predictions[reference]))
    return {"images": len(labels), "reference": reference, "models": models}
