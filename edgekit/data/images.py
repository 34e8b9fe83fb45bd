"""Reading users' images: any mode becomes RGB, and one broken file never stops the others."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgekit.core.errors import EdgekitError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB the way a torchvision training loader sees it.

    torchvision's ImageFolder loader calls `convert("RGB")`; we do the same so predictions match
    training. The exception is 16/32-bit greyscale (I;16, I), which PIL would clip at 255 (almost all
    white): it is scaled to 8 bits first.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(np.round(array / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(array).convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = float(array.max() - array.min()) or 1.0
        array = np.round((array - array.min()) / span * 255.0).astype(np.uint8)
        return Image.fromarray(array).convert("RGB")
    return image.convert("RGB")


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image as RGB; a ValueError says why a file is not a usable image."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = "not an image PIL can read" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ValueError(reason) from None


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def collect_images(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and directories (recursively) into a sorted list of image files.

    A file named explicitly is kept even with an unusual suffix, so that its decode error is reported
    per file; inside directories only files with image suffixes are taken.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if is_image_file(p)))
        elif path.is_file():
            found.append(path)
        else:
            raise EdgekitError(f"{path} does not exist")
    return found


@dataclasses.dataclass(frozen=True)
class LabelledFolder:
    """An image folder with one sub-directory per class, as torchvision's ImageFolder reads it."""

    root: Path
    class_names: tuple[str, ...]  # sorted sub-directory names
    samples: tuple[tuple[Path, int], ...]  # (file, index into class_names)


def read_labelled_folder(root: str | os.PathLike[str]) -> LabelledFolder:
    root = Path(root)
    if not root.is_dir():
        raise EdgekitError(f"{root} is not a directory; expected one sub-directory of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples = [
        (file, index)
        for index, name in enumerate(classes)
        for file in sorted(p for p in (root / name).rglob("*") if is_image_file(p))
    ]
    if not classes or not samples:
        raise EdgekitError(
            f"{root} holds no labelled images; expected one sub-directory per class with image files in it"
        )
    return LabelledFolder(root=root, class_names=tuple(classes), samples=tuple(samples))


def has_class_folders(path: Path | None) -> bool:
    """True for a labelled folder (one sub-directory per class); False for a flat folder or None."""
    return path is not None and path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
