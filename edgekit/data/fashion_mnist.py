"""Fashion-MNIST from Debian's `dataset-fashion-mnist` package: real labelled images, offline.

The IDX files hold 28×28 greyscale images. edgekit writes them out as ordinary PNG image folders so
that every later stage reads them exactly the way it reads a user's own folder.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from PIL import Image

from edgekit.core.errors import EdgekitError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
ROOT_ENV = "EDGEKIT_FASHION_MNIST"
CLASS_NAMES = (
    "tshirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def dataset_root(root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def _read_idx(path: Path) -> np.ndarray:
    candidates = [path, path.with_name(path.name + ".gz")]
    for candidate in candidates:
        if candidate.is_file():
            opener = gzip.open if candidate.suffix == ".gz" else open
            with opener(candidate, "rb") as handle:
                data = handle.read()
            break
    else:
        raise EdgekitError(
            f"Fashion-MNIST not found at {path.parent}; install it with "
            "`apt-get install -y dataset-fashion-mnist` or set EDGEKIT_FASHION_MNIST"
        )
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise EdgekitError(f"{candidate} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise EdgekitError(f"{candidate} is truncated ({array.size} values, header says {int(np.prod(dims))})")
    return array.reshape(dims)


def load_split(split: str, root: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of the `train` or `test` split."""
    images_name, labels_name = _FILES[split]
    base = dataset_root(root)
    return _read_idx(base / images_name), _read_idx(base / labels_name)


def stratified_indices(
    labels: np.ndarray, per_class: int, classes: tuple[int, ...], seed: int, skip: int = 0
) -> list[int]:
    """`per_class` indices of each class, drawn with a fixed seed; `skip` leaves the first ones out
    so that two calls with different skips give disjoint subsets."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in classes:
        pool = rng.permutation(np.flatnonzero(labels == label))
        if len(pool) < skip + per_class:
            raise EdgekitError(f"class {label} has only {len(pool)} images, {skip + per_class} requested")
        chosen.extend(int(i) for i in pool[skip : skip + per_class])
    return chosen


def write_image_folder(
    out: str | os.PathLike[str],
    split: str,
    per_class: int,
    classes: tuple[int, ...] = tuple(range(10)),
    seed: int = 0,
    skip: int = 0,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a stratified subset as `out/<class name>/<index>.png` (greyscale PNGs, like a user's)."""
    images, labels = load_split(split, root)
    out = Path(out)
    for index in stratified_indices(labels, per_class, classes, seed, skip):
        folder = out / CLASS_NAMES[labels[index]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(folder / f"{split}-{index:05d}.png")
    return out
