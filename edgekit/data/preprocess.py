"""Preprocessing as data: the spec travels in the bundle's manifest and every backend applies it.

The default is torchvision's ImageNet eval transform (`Resize(256)` bilinear with antialias,
`CenterCrop(224)`, ToTensor, Normalize with ImageNet mean/std). It is implemented with PIL and NumPy
only, so a deployed bundle needs no torch; tests check it against torchvision's own transform.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from edgekit.core.errors import EdgekitError

DECODE_MODES = ("exact", "fast")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


FAST_DECODE_MARGIN = 2  # the fast path decodes JPEGs to no less than this many times the resize target


@dataclasses.dataclass(frozen=True)
class PreprocessSpec:
    resize: int = 256  # shorter side, before the centre crop
    crop: int = 224  # square centre crop = the network's input size
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"  # PIL resampling, antialiased like torchvision on PIL images
    # "exact": torchvision's transform bit for bit. "fast": a JPEG at least four times the resize target
    # is decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling (PIL's draft), never below twice the
    # target, then resized as usual; its agreement with "exact" is measured at compile time.
    decode: str = "exact"
    # True: the model itself normalises, taking the uint8 RGB crop (N, crop, crop, 3) as it comes out of
    # resize/crop: no float pass on the CPU, and an integrator can feed raw camera crops.
    # `compile --normalise-in-model` folds it in and records the measured agreement with the float input.
    normalise_in_model: bool = False

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise EdgekitError(f"interpolation must be one of {', '.join(_INTERPOLATIONS)}")
        if not isinstance(self.normalise_in_model, bool):
            raise EdgekitError("preprocessing normalise_in_model must be true or false")
        if self.decode not in DECODE_MODES:
            raise EdgekitError(f"preprocessing decode must be one of {', '.join(DECODE_MODES)}")
        if not (isinstance(self.resize, int) and isinstance(self.crop, int) and 8 <= self.crop <= self.resize <= 8192):
            raise EdgekitError(
                f"preprocessing needs integers 8 <= crop <= resize <= 8192 (got {self.crop!r}, {self.resize!r})"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise EdgekitError(f"preprocessing {name} needs 3 values (one per RGB channel)")
        if any(s <= 0 for s in self.std):
            raise EdgekitError("preprocessing std values must be positive")

    @property
    def scale_to(self) -> int | None:
        """What `read_image` may DCT-scale a JPEG down to: twice the resize target on the fast path, else None.

        Why twice: a DCT-scaled decode blurs like a box of its scale factor, on top of the resize's own
        antialiasing. Scaled down to the target itself (a 1080p frame to 480×270 for 256), that extra blur is
        as wide as the resize's filter and the 224 crop moved by 2.2 grey levels on average (1 % of pixels by
        15 or more) on scikit-learn's china.jpg at 1080p; kept at twice the target (960×540), by 0.5 (1 % by
        3 or more), for about a quarter more decode time. On labels (benchmarks/fast_decode_rules.py, 3,000
        paired frames): as good at the 1080p ratio, better at the 12 MP ratio (30 vs 8 discordant images)."""
        return FAST_DECODE_MARGIN * self.resize if self.decode == "fast" else None

    @property
    def input_dtype(self) -> type[np.generic]:
        return np.uint8 if self.normalise_in_model else np.float32

    @property
    def input_layout(self) -> str:
        return "NHWC" if self.normalise_in_model else "NCHW"

    def input_shape(self, batch: int | None) -> list[int | None]:
        """The model's input shape as the manifest records it: NHWC uint8 pixels when folded, else NCHW."""
        return [batch, self.crop, self.crop, 3] if self.normalise_in_model else [batch, 3, self.crop, self.crop]

    def blank_batch(self, batch: int) -> np.ndarray:
        """A batch of the model's input, all zeros: the work a network does does not depend on the values."""
        return np.zeros(self.input_shape(batch), self.input_dtype)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise EdgekitError(f"unknown preprocessing key(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        try:
            for name in ("mean", "std"):
                if name in values:
                    values[name] = tuple(float(v) for v in values[name])
                    if not all(math.isfinite(v) for v in values[name]):
                        raise ValueError(f"{name} must be finite numbers")
            for name in ("interpolation", "decode"):
                if not isinstance(values.get(name, "exact" if name == "decode" else "bilinear"), str):
                    raise ValueError(f"{name} must be a name")
        except (TypeError, ValueError) as exc:
            raise EdgekitError(f"preprocessing is malformed ({exc})") from None
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> PreprocessSpec:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    # Same arithmetic as torchvision's Resize(int): the longer side is truncated, not rounded.
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def resize_and_crop(image: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """The geometric half of the eval transform: Resize(spec.resize) then CenterCrop(spec.crop).

    On the fast path only the crop's region is resampled (PIL's `box`: the same filter centres and
    support, without the columns and rows the crop throws away, half a 16:9 frame); the exact path
    resizes the whole image as torchvision does, bit for bit."""
    if image.mode != "RGB":
        raise ValueError("preprocess expects an RGB image; use edgekit.data.images.to_rgb first")
    width, height = resized_size(*image.size, spec.resize)
    top = round((height - spec.crop) / 2.0)
    left = round((width - spec.crop) / 2.0)
    if spec.decode == "fast":
        scale_x, scale_y = image.width / width, image.height / height
        box = (left * scale_x, top * scale_y, (left + spec.crop) * scale_x, (top + spec.crop) * scale_y)
        return image.resize((spec.crop, spec.crop), _INTERPOLATIONS[spec.interpolation], box=box)
    image = image.resize((width, height), _INTERPOLATIONS[spec.interpolation])
    return image.crop((left, top, left + spec.crop, top + spec.crop))


@functools.lru_cache(maxsize=16)
def _normalised_values(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256): each channel's normalised value of every byte, computed with the same float32 operations
    as torchvision's ToTensor + Normalize, so looking a pixel up gives the bit-identical value."""
    levels = np.arange(256, dtype=np.float32)[:, None] / 255.0
    table = (levels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    table = np.ascontiguousarray(table.T)
    table.setflags(write=False)
    return table


def normalise(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """The arithmetic half: ToTensor and Normalize, to a float32 CHW array (a table lookup per channel:
    twice as fast as the arithmetic, and the same values)."""
    return float_input(np.asarray(image, dtype=np.uint8)[None], spec)[0]


def float_input(batch: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """A batch as a model that does not normalise itself takes it (a PyTorch reference, say): uint8 NHWC
    pixels are normalised to float32 NCHW, bit-identically to `normalise`; float batches pass unchanged."""
    if batch.dtype != np.uint8:
        return batch
    table = _normalised_values(spec.mean, spec.std)
    planes = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    out = np.empty(planes.shape, np.float32)
    for channel in range(3):
        np.take(table[channel], planes[:, channel], out=out[:, channel])
    return out


def model_input(cropped: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """The resized and cropped image as the model takes it: its uint8 HWC pixels when the model normalises
    itself, else `normalise`'s float32 CHW array."""
    return np.array(cropped, dtype=np.uint8) if spec.normalise_in_model else normalise(cropped, spec)


def preprocess(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """One RGB PIL image → the model's input; unfolded, a float32 CHW array exactly as torchvision's eval
    transform computes it."""
    return model_input(resize_and_crop(image, spec), spec)


def preprocess_batch(images: Sequence[Image.Image], spec: PreprocessSpec) -> np.ndarray:
    return np.stack([preprocess(image, spec) for image in images]).astype(spec.input_dtype, copy=False)


def normalisation_affine(spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift) with normalised = pixel × scale + shift: what a model folds in."""
    std = np.asarray(spec.std, dtype=np.float64)
    scale = 1.0 / (255.0 * std)
    shift = -np.asarray(spec.mean, dtype=np.float64) / std
    return scale.astype(np.float32), shift.astype(np.float32)


def pixels_of(batch: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The uint8 NHWC pixels a normalised NCHW batch was made from (exact for `normalise`'s output: it
    rounds back to the integer each value came from)."""
    mean = np.asarray(spec.mean, dtype=np.float64)[None, :, None, None]
    std = np.asarray(spec.std, dtype=np.float64)[None, :, None, None]
    pixels = np.rint((batch.astype(np.float64) * std + mean) * 255.0)
    return np.ascontiguousarray(np.clip(pixels, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))
