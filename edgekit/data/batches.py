"""Image files → preprocessed batches: sampling with a fixed seed, decoding, synthetic inputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.data.images import read_image
from edgekit.data.preprocess import PreprocessSpec, preprocess


def sample(items: Sequence[Any], limit: int | None, seed: int = 0) -> list[Any]:
    """At most `limit` items, drawn with a fixed seed and kept in their original order."""
    if limit is None or len(items) <= limit:
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


@dataclasses.dataclass
class ImageBatch:
    inputs: np.ndarray  # preprocessed float32 NCHW
    files: list[Path]  # the files that decoded, in order
    errors: dict[str, str]  # file → why it could not be read


def load_images(files: Sequence[Path], spec: PreprocessSpec, progress: Progress = QUIET) -> ImageBatch:
    if not files:
        raise EdgekitError("no image files to read")
    arrays, kept, errors = [], [], {}
    for file in progress.bar(files, desc="reading images", total=len(files), unit="img"):
        try:
            arrays.append(preprocess(read_image(file, scale_to=spec.scale_to), spec))
            kept.append(file)
        except ValueError as exc:
            errors[str(file)] = str(exc)
    if not arrays:
        raise EdgekitError(f"none of the {len(files)} image file(s) could be read (e.g. {next(iter(errors.items()))})")
    return ImageBatch(np.stack(arrays), kept, errors)


def synthetic_images(count: int, width: int, height: int, seed: int = 0) -> list[Any]:
    """Random-pixel RGB PIL images: a last resort when the user gave no images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(count)]


def synthetic_inputs(count: int, spec: PreprocessSpec, seed: int = 0) -> np.ndarray:
    """Random pixel images, preprocessed."""
    images = synthetic_images(count, spec.resize, spec.resize, seed)
    return np.stack([preprocess(image, spec) for image in images])
