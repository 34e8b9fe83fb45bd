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
from edgekit.measure.stats import PairedDifference, indistinguishable_from_chance, top1_agreement, wilson

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
        "top1_agreement": top1_agreement(reference, candidate).rate,
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
    mapping: str | None = None  # how sub-directories were mapped to outputs, when the model has no class names


def mapping_note(folder: LabelledFolder, class_names: Sequence[str]) -> str | None:
    """For a model without class names: which sub-directory stands for which output, in words."""
    if not all(name == f"class_{i}" for i, name in enumerate(class_names)):
        return None
    pairs = ", ".join(f"{name}→output {i}" for i, name in enumerate(folder.class_names[:8]))
    more = " …" if len(folder.class_names) > 8 else ""
    return (
        f"the model has no class names: {folder.root.name}/ maps by sorted sub-directory (ImageFolder's order): "
        f"{pairs}{more}; pass --classes FILE if its outputs are in another order"
    )


def _best_matching(confusion: np.ndarray) -> np.ndarray:
    """For each true class, the output that best explains it, one output per class (greedy on the confusion
    matrix's largest cells; exact enough to see a shuffled label order)."""
    matrix = confusion.astype(float).copy()
    match = np.full(len(matrix), -1)
    for _ in range(len(matrix)):
        row, col = np.unravel_index(np.argmax(matrix), matrix.shape)
        if matrix[row, col] < 0:
            break
        match[row] = col
        matrix[row, :] = -1
        matrix[:, col] = -1
    return match


def labels_warning(labels: np.ndarray, predicted: np.ndarray, classes: int, what: str) -> str | None:
    """A warning when the folder's labels do not look like the model's outputs: top-1 no better than
    guessing, or another assignment of sub-directories to outputs explaining the predictions far better
    (a one-sided sign test on the images it fixes against those it breaks, 99 %)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    n, correct = len(labels), int(np.sum(predicted == labels))
    low, high = wilson(correct, n)
    figure = f"{what} top-1 is {correct / n:.1%} (95 % interval {low:.1%}–{high:.1%}, {n} images)"
    if indistinguishable_from_chance(correct, n, classes):
        return (
            f"warning: {figure}, no better than guessing among {classes} classes: the folder's labels probably do "
            "not match the model's outputs (check the class names and their order, or pass --classes)"
        )
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    match = _best_matching(confusion)
    remapped = match[labels]
    fixed = int(np.sum((predicted == remapped) & (predicted != labels)))
    broken = int(np.sum((predicted != remapped) & (predicted == labels)))
    if fixed + broken and fixed - broken > 2.326 * np.sqrt(fixed + broken) and fixed >= 0.1 * n:
        moved = [f"{c}→output {match[c]}" for c in range(classes) if match[c] != c][:6]
        return (
            f"warning: {figure}, but {(correct + fixed - broken) / n:.1%} if the labels were assigned as "
            f"{', '.join(moved)} (label index→output): the folder's class order probably differs from the "
            "model's; pass --classes with the model's output order"
        )
    return None


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
        return EvalSet(batch, labels, f"labelled images from {folder}", mapping_note(labelled, class_names))
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
        correct = int(np.sum(predicted == labels))
        models[name] = {
            "top1": correct / len(labels),
            "top1_ci95": list(wilson(correct, len(labels))),
            "per_class_top1": per_class,
        }
        if len(class_names) <= MAX_CONFUSION_CLASSES:  # 1,000 ImageNet classes would be a million numbers
            confusion = np.zeros((len(class_names), len(class_names)), dtype=np.int64)  # [true class][predicted]
            np.add.at(confusion, (labels, predicted), 1)
            models[name]["confusion"] = confusion.tolist()
        if name != reference:
            agreement = top1_agreement(predictions[reference], predicted)
            models[name]["top1_agreement_with_reference"] = agreement.rate
            models[name]["top1_agreement_ci95"] = list(agreement.interval())
            # Paired against the reference on the same images: what the accuracy rule judges (`measure.decide`).
            models[name]["vs_reference"] = PairedDifference.of(
                predictions[reference] == labels, predicted == labels
            ).to_dict()
    return {"images": len(labels), "reference": reference, "models": models}
