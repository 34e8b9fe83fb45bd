"""Reading users' images: any mode becomes RGB, and one broken file never stops the others.

Images come from anywhere, so reading is bounded: the pixel count in the header is checked before
anything is decoded (a 164 KB PNG can hold 13,000 × 13,000 pixels, 500 MB decoded), only regular
files are opened, and a file's own problems (not an image, truncated, too large) are a ValueError for
that file, while the machine's (too many open files, an I/O error) stop the run with an EdgekitError.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path
from struct import error as struct_error
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgekit.core.errors import EdgekitError
from edgekit.data.preprocess import resized_size

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
MAX_PIXELS_ENV = "EDGEKIT_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 120_000_000  # a 100-megapixel camera's photo fits; 360 MB as RGB at most
# The machine's problems, not the file's: they would hit every other image too.
_SYSTEM_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.EIO, errno.ENOMEM, errno.ENOBUFS})
# PIL warns (on stderr) from 89 M pixels; edgekit enforces its own cap before decoding instead.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# PIL's decoders warn about oddities they skip (TIFF tags past the end of the file): the image either
# decodes or is reported per file, and a warning would break predict's one-line-per-problem output.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


def max_image_pixels() -> int:
    """The pixel cap: $EDGEKIT_MAX_IMAGE_PIXELS, else DEFAULT_MAX_PIXELS."""
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None:
        return DEFAULT_MAX_PIXELS
    if not raw.strip().isdigit() or not 1 <= int(raw) <= 10**10:
        raise EdgekitError(
            f"${MAX_PIXELS_ENV} must be a whole number of pixels within 1..10000000000 (got {raw[:30]!r})"
        )
    return int(raw)


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


def _system_error(path: str | os.PathLike[str], exc: OSError) -> EdgekitError:
    return EdgekitError(f"cannot read {path}: {exc.strerror or exc} (a problem of this machine, not of the image)")


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None, scale_to: int | None = None) -> Image.Image:
    """Open and fully decode an image as RGB; a ValueError says why a file is not a usable image.

    Refuses, before decoding, anything that is not a regular file and images of more than `max_pixels`
    (default: `max_image_pixels()`). `scale_to` (shorter side; the fast path passes twice its resize target):
    a JPEG at least twice that size is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that stays at or
    above it.
    """
    with _open_regular(path) as handle:
        return _decode(handle, path, max_image_pixels() if max_pixels is None else max_pixels, scale_to)


def read_file(path: str | os.PathLike[str]) -> bytes:
    """An image file's bytes, with read_image's checks (regular files only, system errors stop the run)."""
    with _open_regular(path) as handle:
        try:
            return handle.read()
        except OSError as exc:
            if exc.errno in _SYSTEM_ERRNOS:
                raise _system_error(path, exc) from None
            raise ValueError(exc.strerror or str(exc)) from None


def decode_image(data: bytes, max_pixels: int | None = None, scale_to: int | None = None) -> Image.Image:
    """read_image for bytes already read (`read_file`): the same checks, errors and fast path."""
    return _decode(
        io.BytesIO(data), "<image bytes>", max_image_pixels() if max_pixels is None else max_pixels, scale_to
    )


def _open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    try:
        # O_NONBLOCK: a FIFO must not hang the run; it is refused below, like any non-regular file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in _SYSTEM_ERRNOS:
            raise _system_error(path, exc) from None
        if exc.errno == errno.ENOENT:
            raise ValueError("does not exist") from None
        raise ValueError(exc.strerror or str(exc)) from None
    handle = os.fdopen(fd, "rb")
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode) or not stat.S_ISREG(mode):
        handle.close()
        if stat.S_ISDIR(mode):
            raise ValueError("is a directory, not an image")
        raise ValueError("is not a regular file (a device, FIFO or socket), not an image")
    return handle


def _decode(handle: BinaryIO, path: object, limit: int, scale_to: int | None) -> Image.Image:
    try:
        with Image.open(handle) as image:
            width, height = image.size
            if width * height > limit:
                raise ValueError(_too_large(width, height, limit))
            if scale_to is not None and image.format == "JPEG":
                image.draft(None, resized_size(width, height, scale_to))
            image.load()
            return to_rgb(image)
    except Image.DecompressionBombError:
        raise ValueError(_too_large(0, 0, limit)) from None
    except UnidentifiedImageError:
        raise ValueError("not an image PIL can read") from None
    except OSError as exc:
        if exc.errno in _SYSTEM_ERRNOS:
            raise _system_error(str(path), exc) from None
        raise ValueError(str(exc) or "unreadable image data") from None
    except (SyntaxError, ValueError, EOFError, IndexError, struct_error) as exc:
        # What PIL's decoders raise for malformed data (IndexError/struct.error: short tables in a header).
        raise ValueError(str(exc) or type(exc).__name__) from None


def _too_large(width: int, height: int, limit: int) -> str:
    size = f"{width}×{height} pixels" if width else "its header declares so many pixels that it"
    return f"{size} is more than the {limit:,} edgekit decodes (set ${MAX_PIXELS_ENV} to allow more, or downscale it)"


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
        elif path.exists():  # a file, or a FIFO/device named explicitly: read_image says what is wrong with it
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
