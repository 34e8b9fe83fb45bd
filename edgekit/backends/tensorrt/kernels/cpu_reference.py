"""The CPU twin of preprocess.cu: the coefficient tables the kernel reads, and its exact arithmetic in NumPy.

torchvision's eval transform on a PIL image is PIL's `Image.resize` (antialiased: the filter widens by the
downscale factor), a centre crop and `(v / 255 - mean) / std`. PIL resamples 8-bit images with fixed-point
coefficients in two passes, horizontal first into a rounded and clipped uint8 intermediate (Pillow's
libImaging/Resample.c). This module computes those coefficients the way PIL does (float64, the same
operation order, then the same conversion to fixed point) but only for the output pixels that survive the
crop, and `resample_crop` runs the kernel's integer arithmetic on them. The launcher uploads exactly the
tables built here, so testing this module against PIL on the CPU tests what the GPU computes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from edgekit.core.errors import EdgekitError
from edgekit.data.preprocess import PreprocessSpec, resized_size

PRECISION_BITS = 22  # PIL's fixed point for 8-bit images: 32 - 8 - 2
_HALF = 1 << (PRECISION_BITS - 1)
# torchvision GoogLeNet's and Inception v3's _transform_input re-normalises with these fixed ImageNet
# constants, whatever normalisation the preprocessing used: x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5.
TRANSFORM_INPUT_MEAN = (0.485, 0.456, 0.406)
TRANSFORM_INPUT_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class PixelLayout:
    """How one pixel's bytes are laid out: bytes per pixel and the byte offsets of R, G and B."""

    stride: int
    offsets: tuple[int, int, int]


# "L" (greyscale) reads one byte as R = G = B, which is what PIL's convert("RGB") does before the resize.
LAYOUTS: dict[str, PixelLayout] = {
    "RGB": PixelLayout(3, (0, 1, 2)),
    "BGR": PixelLayout(3, (2, 1, 0)),
    "RGBA": PixelLayout(4, (0, 1, 2)),
    "BGRA": PixelLayout(4, (2, 1, 0)),
    "L": PixelLayout(1, (0, 0, 0)),
}


def layout(name: str) -> PixelLayout:
    try:
        return LAYOUTS[name.upper()]
    except KeyError:
        raise EdgekitError(f"unknown pixel layout {name!r}: use one of {', '.join(LAYOUTS)}") from None


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _bicubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic with a = -0.5, written in PIL's operation order so the float64 results are identical.
    a = -0.5
    x = np.abs(x)
    inner = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    outer = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))


_FILTERS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "bilinear": (_bilinear, 1.0),
    "bicubic": (_bicubic, 2.0),
}


def resample_coeffs(
    in_size: int, out_size: int, interpolation: str = "bilinear", start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """PIL's coefficients for resizing one axis, for output indices start..stop: (bounds int32 [n, 2] = first
    source index and tap count, normalised weights float64 [n, taps]); weights past a tap count are 0.

    Follows Resample.c's precompute_coeffs: the filter's support is scaled by the downscale factor
    (the antialiasing), centres sit at (x + 0.5) * scale, and each pixel's weights are divided by their
    sum accumulated left to right (the loop below keeps that order; np.sum would not).
    """
    stop = out_size if stop is None else stop
    if interpolation == "nearest":
        bounds, weights = _nearest_coeffs(in_size, stop, float(in_size) / out_size)
        return bounds[start:], weights[start:]
    if interpolation not in _FILTERS:
        raise EdgekitError(f"the GPU kernel has no {interpolation!r} interpolation")
    filter_fn, filter_support = _FILTERS[interpolation]
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = filter_support * filterscale
    taps = math.ceil(support) * 2 + 1
    inv_filterscale = 1.0 / filterscale
    center = (np.arange(start, stop, dtype=np.float64) + 0.5) * scale
    first = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)  # C's (int) truncates
    last = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    count = last - first
    weights = np.zeros((center.size, taps), dtype=np.float64)
    total = np.zeros(center.size, dtype=np.float64)
    for x in range(taps):
        w = filter_fn(((x + first).astype(np.float64) - center + 0.5) * inv_filterscale)
        w = np.where(x < count, w, 0.0)
        weights[:, x] = w
        total += w
    nonzero = total != 0.0
    weights[nonzero] /= total[nonzero, None]
    return np.stack([first, count], axis=1).astype(np.int32), weights


def _nearest_coeffs(in_size: int, stop: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    # PIL resizes with NEAREST through an affine scale (Geometry.c ImagingScaleAffine): the source
    # coordinate starts at scale / 2 and is advanced by adding scale, then truncated. cumsum adds in the
    # same order (so all indices up to `stop` are computed). One tap of weight 1.0 reproduces the copy
    # exactly in the fixed-point arithmetic.
    steps = np.full(stop, scale, dtype=np.float64)
    steps[0] = scale * 0.5
    source = np.clip(np.cumsum(steps).astype(np.int64), 0, in_size - 1)
    bounds = np.stack([source, np.ones_like(source)], axis=1).astype(np.int32)
    return bounds, np.ones((stop, 1), dtype=np.float64)


def fixed_point(weights: np.ndarray) -> np.ndarray:
    """PIL's normalize_coeffs_8bpc: round half away from zero to PRECISION_BITS fractional bits."""
    scaled = weights * float(1 << PRECISION_BITS)
    return np.where(weights < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled)).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class CropTables:
    """Everything the kernel needs to know about one source size: per output column and row of the crop,
    the first source index, the tap count and the fixed-point weights."""

    width: int
    height: int
    crop: int
    xbounds: np.ndarray  # int32 [crop, 2]
    ybounds: np.ndarray  # int32 [crop, 2]
    xweights: np.ndarray  # int32 [crop, kx]
    yweights: np.ndarray  # int32 [crop, ky]

    @property
    def kx(self) -> int:
        return int(self.xweights.shape[1])

    @property
    def ky(self) -> int:
        return int(self.yweights.shape[1])

    def packed(self) -> np.ndarray:
        """The device layout preprocess.cu reads: x bounds, y bounds, x weights, y weights (int32)."""
        parts = (self.xbounds, self.ybounds, self.xweights, self.yweights)
        return np.ascontiguousarray(np.concatenate([p.ravel() for p in parts]).astype(np.int32))


def _axis_table(in_size: int, out_size: int, start: int, crop: int, interpolation: str) -> tuple[np.ndarray, ...]:
    bounds, weights = resample_coeffs(in_size, out_size, interpolation, start, start + crop)
    taps = max(int(bounds[:, 1].max()), 1)  # only as wide as the crop needs
    fixed = np.ascontiguousarray(fixed_point(weights[:, :taps]))
    # The kernel accumulates in int32: prove no partial sum can overflow (255 * the weights' magnitude).
    worst = _HALF + 255 * int(np.abs(fixed.astype(np.int64)).sum(axis=1).max())
    if worst >= 2**31:
        raise EdgekitError(f"resampling {in_size} -> {out_size} would overflow the kernel's int32 sums")
    return np.ascontiguousarray(bounds), fixed


def build_tables(width: int, height: int, spec: PreprocessSpec) -> CropTables:
    """Tables for a width × height source: torchvision's Resize(spec.resize) size, its CenterCrop offsets
    (`round((size - crop) / 2)`), and PIL's coefficients for the cropped columns and rows only."""
    if width < 1 or height < 1:
        raise EdgekitError(f"image size must be positive (got {width}×{height})")
    resized_w, resized_h = resized_size(width, height, spec.resize)
    left = round((resized_w - spec.crop) / 2.0)
    top = round((resized_h - spec.crop) / 2.0)
    xbounds, xweights = _axis_table(width, resized_w, left, spec.crop, spec.interpolation)
    ybounds, yweights = _axis_table(height, resized_h, top, spec.crop, spec.interpolation)
    return CropTables(width, height, spec.crop, xbounds, ybounds, xweights, yweights)


def normalisation(spec: PreprocessSpec, transform_input: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift) float32 with out = v * scale + shift for a resampled uint8 value v:
    ToTensor's /255 and Normalize folded together in float64, optionally composed with GoogLeNet's (or Inception v3's)
    transform_input (then the network must be run with transform_input off)."""
    mean = np.asarray(spec.mean, dtype=np.float64)
    std = np.asarray(spec.std, dtype=np.float64)
    scale = 1.0 / (255.0 * std)
    shift = -mean / std
    if transform_input:
        factor = np.asarray(TRANSFORM_INPUT_STD, dtype=np.float64) / 0.5
        offset = (np.asarray(TRANSFORM_INPUT_MEAN, dtype=np.float64) - 0.5) / 0.5
        scale, shift = scale * factor, shift * factor + offset
    return scale.astype(np.float32), shift.astype(np.float32)


def _clip8(acc: np.ndarray) -> np.ndarray:
    return np.clip(acc >> PRECISION_BITS, 0, 255)


def resample_crop(buffer: np.ndarray, pitch: int, pixel_layout: str, tables: CropTables) -> np.ndarray:
    """The kernel's integer arithmetic: uint8 [crop, crop, 3] (RGB) from a source whose rows start every
    `pitch` bytes in `buffer` (flat uint8). Reads exactly the bytes the kernel reads."""
    fmt = layout(pixel_layout)
    flat = np.ascontiguousarray(buffer, dtype=np.uint8).reshape(-1)
    needed = (tables.height - 1) * pitch + tables.width * fmt.stride
    if pitch < tables.width * fmt.stride or flat.size < needed:
        raise EdgekitError(f"buffer too small for {tables.width}×{tables.height} {pixel_layout} with pitch {pitch}")
    ystart, ycount = tables.ybounds[:, 0].astype(np.int64), tables.ybounds[:, 1].astype(np.int64)
    row0 = int(ystart.min())
    rows = np.arange(row0, int((ystart + ycount).max()), dtype=np.int64)
    xstart, xcount = tables.xbounds[:, 0].astype(np.int64), tables.xbounds[:, 1].astype(np.int64)
    offsets = np.asarray(fmt.offsets, dtype=np.int64)
    # Horizontal pass over every source row any output row needs: [rows, crop, 3].
    acc = np.full((rows.size, tables.crop, 3), _HALF, dtype=np.int64)
    for i in range(tables.kx):
        column = xstart + np.minimum(i, xcount - 1)  # taps past the count have weight 0: stay in bounds
        weight = np.where(i < xcount, tables.xweights[:, i], 0).astype(np.int64)
        index = rows[:, None, None] * pitch + column[None, :, None] * fmt.stride + offsets[None, None, :]
        acc += flat[index].astype(np.int64) * weight[None, :, None]
    horizontal = _clip8(acc)
    # Vertical pass: [crop, crop, 3].
    acc = np.full((tables.crop, tables.crop, 3), _HALF, dtype=np.int64)
    for j in range(tables.ky):
        row = ystart + np.minimum(j, ycount - 1) - row0
        weight = np.where(j < ycount, tables.yweights[:, j], 0).astype(np.int64)
        acc += horizontal[row] * weight[:, None, None]
    return _clip8(acc).astype(np.uint8)


def normalise(pixels: np.ndarray, scale: np.ndarray, shift: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """uint8 [H, W, 3] → [3, H, W]: `v * scale + shift` in float32 with two roundings, as the kernel's
    __fmul_rn/__fadd_rn; float16 by round-to-nearest-even like its cvt.rn.f16.f32."""
    values = np.moveaxis(pixels, -1, 0).astype(np.float32)
    out = values * scale.astype(np.float32)[:, None, None] + shift.astype(np.float32)[:, None, None]
    return np.ascontiguousarray(out.astype(output_dtype(dtype)))


def output_dtype(dtype: str) -> type[np.floating]:
    if dtype in ("float32", "fp32"):
        return np.float32
    if dtype in ("float16", "fp16", "half"):
        return np.float16
    raise EdgekitError(f"output dtype must be float32 or float16 (got {dtype!r})")


def pad_rows(image: np.ndarray, pitch: int, fill: int = 0xA5) -> np.ndarray:
    """An image's bytes as rows of `pitch` bytes (uint8 [H, pitch]); padding holds `fill`, so a kernel
    that reads it gives visibly wrong results."""
    rows = np.ascontiguousarray(image, dtype=np.uint8).reshape(image.shape[0], -1)
    if pitch < rows.shape[1]:
        raise EdgekitError(f"pitch {pitch} is smaller than a row ({rows.shape[1]} bytes)")
    out = np.full((rows.shape[0], pitch), fill, dtype=np.uint8)
    out[:, : rows.shape[1]] = rows
    return out


def image_layout_check(image: np.ndarray, pixel_layout: str) -> tuple[int, int]:
    """(width, height) of an HWC (or HW for "L") uint8 array, checked against the layout's channel count."""
    fmt = layout(pixel_layout)
    if image.dtype != np.uint8:
        raise EdgekitError(f"images must be uint8 (got {image.dtype})")
    channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else -1
    if channels != fmt.stride:
        raise EdgekitError(f"a {pixel_layout} image needs {fmt.stride} channel(s), got array of shape {image.shape}")
    return int(image.shape[1]), int(image.shape[0])


def reference_preprocess(
    image: np.ndarray,
    spec: PreprocessSpec,
    *,
    pixel_layout: str = "RGB",
    transform_input: bool = False,
    dtype: str = "float32",
    pitch: int | None = None,
) -> np.ndarray:
    """What the kernel writes for one image: [3, crop, crop] float32/float16 from an HWC uint8 array,
    optionally read through rows padded to `pitch` bytes."""
    width, height = image_layout_check(image, pixel_layout)
    row_bytes = width * layout(pixel_layout).stride
    buffer = pad_rows(image, pitch or row_bytes)
    pixels = resample_crop(buffer, pitch or row_bytes, pixel_layout, build_tables(width, height, spec))
    scale, shift = normalisation(spec, transform_input)
    return normalise(pixels, scale, shift, dtype)
