"""Calibration images for INT8, and the held-out images the accuracy guard checks on.

The user's folder is shuffled with a fixed seed. Where it holds enough images, it is split: a held-out
part that is never calibrated on (the guard compares each quantized build with FP32 there, without
labels: up to `GUARD_MAX_IMAGES`) and the calibration part. Where it does not — the usual case, a few
hundred images — holding a quarter back leaves the guard too few images to see anything (64 images at
100 % agreement cannot tell a 99 % build from a 95.9 % one: benchmarks/results/compile_speed.md), so the
guard is *cross-fitted* instead: the images are split into two folds, each fold's build is calibrated on
the other one, and every image is judged by a build that never saw it; the build that ships calibrates on
them all. Both are preprocessed exactly as at inference.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.data.batches import load_images
from edgekit.data.images import collect_images
from edgekit.data.preprocess import PreprocessSpec

GUARD_MAX_IMAGES = 500  # enough to tell 98 % agreement from a 99 % threshold (95 % Wilson interval)
GUARD_MIN_IMAGES = 20  # below this the guard's interval spans tens of points: it is not run


@dataclasses.dataclass
class CalibrationSet:
    inputs: np.ndarray | None  # calibrate on these (None: the precision needs no calibration)
    held_out: np.ndarray | None  # never calibrated on: the guard's images (None: too few images, or cross-fitted)
    warnings: list[str]
    folds: tuple[np.ndarray, np.ndarray] | None = None  # cross-fitted guard: each fold calibrates the other's build


def held_out_count(available: int, calibrate: int) -> int:
    """How many of `available` images the guard keeps back: what calibration does not need, at least a
    quarter, at most GUARD_MAX_IMAGES; none when that would be too few to mean anything."""
    count = min(GUARD_MAX_IMAGES, max(available - calibrate, available // 4))
    return count if count >= GUARD_MIN_IMAGES else 0


def calibration_inputs(
    folder: Path,
    spec: PreprocessSpec,
    size: int,
    seed: int = 0,
    progress: Progress = QUIET,
    flag: str = "--calib",
    cross_fit: bool = False,
) -> CalibrationSet:
    """Split `folder`'s images (labels not needed; sub-folders are searched) into held-out images and up to
    `size` calibration images; `size` 0 (FP16: nothing to calibrate) keeps everything for the guard. With
    `cross_fit`, a folder too small to hold `GUARD_MAX_IMAGES` back is not split but folded in two (module
    docstring)."""
    if not folder.is_dir():
        raise EdgekitError(f"{flag} {folder} is not a directory of images")
    files = collect_images([folder])
    if not files:
        raise EdgekitError(f"{flag} {folder} holds no image files")
    order = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
    if cross_fit and size and 2 * GUARD_MIN_IMAGES <= len(files) < size + GUARD_MAX_IMAGES:
        return _folded(order, spec, size, progress)
    held = held_out_count(len(files), size)
    warnings = []
    held_out = None
    if held:
        batch = load_images(order[:held], spec, progress)
        held_out = batch.inputs
        if batch.errors:
            warnings.append(f"{len(batch.errors)} unreadable file(s) skipped, e.g. {next(iter(batch.errors))}")
    elif size:
        warnings.append(
            f"{flag} {folder} has {len(files)} images: too few to keep {GUARD_MIN_IMAGES}+ back for the accuracy "
            "guard, so INT8 is checked only on --val (give more images to have it guarded)"
        )
    if not size:
        return CalibrationSet(None, held_out, warnings)
    batch = load_images(order[held : held + size], spec, progress)
    if batch.errors:
        warnings.append(f"{len(batch.errors)} unreadable calibration file(s) skipped, e.g. {next(iter(batch.errors))}")
    if len(batch.files) < size:
        kept = f", {held} more held out for the accuracy guard" if held else ""
        warnings.append(f"only {len(batch.files)} calibration images (asked for {size}{kept}); calibrating with those")
    return CalibrationSet(batch.inputs, held_out, warnings)


def _folded(order: list[Path], spec: PreprocessSpec, size: int, progress: Progress) -> CalibrationSet:
    """Every image for the guard, in two folds (alternate images of the shuffled order); the shipped build
    calibrates on the first `size` of them."""
    batch = load_images(order, spec, progress)
    warnings = []
    if batch.errors:
        warnings.append(f"{len(batch.errors)} unreadable file(s) skipped, e.g. {next(iter(batch.errors))}")
    images = batch.inputs
    if len(images) < size:
        warnings.append(
            f"only {len(images)} calibration images (asked for {size}); calibrating with those, and the accuracy "
            "guard checks every one of them cross-fitted (each by a build calibrated on the other half)"
        )
    return CalibrationSet(images[:size], None, warnings, (images[0::2], images[1::2]))
