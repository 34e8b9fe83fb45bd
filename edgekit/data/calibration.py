"""Calibration images for INT8: sampled with a fixed seed, preprocessed exactly as at inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.data.batches import load_images, sample
from edgekit.data.images import collect_images
from edgekit.data.preprocess import PreprocessSpec


def calibration_inputs(
    folder: Path, spec: PreprocessSpec, size: int, seed: int = 0, progress: Progress = QUIET
) -> tuple[np.ndarray, list[str]]:
    """(preprocessed float32 NCHW batch, warnings). Labels are not needed; sub-folders are searched."""
    if not folder.is_dir():
        raise EdgekitError(f"--calib {folder} is not a directory of images")
    files = collect_images([folder])
    if not files:
        raise EdgekitError(f"--calib {folder} holds no image files")
    batch = load_images(sample(files, size, seed), spec, progress)
    warnings = []
    if batch.errors:
        warnings.append(f"{len(batch.errors)} unreadable calibration file(s) skipped, e.g. {next(iter(batch.errors))}")
    if len(batch.files) < size:
        warnings.append(f"only {len(batch.files)} calibration images (asked for {size}); calibrating with those")
    return batch.inputs, warnings
