"""Which input transform a GoogLeNet or Inception v3 was trained with, read from the model and the user's images.

torchvision's GoogLeNet and Inception v3 may re-normalise its input (`transform_input`: ImageNet mean/std to the
(x − 0.5) / 0.5 of the original Inception). A checkpoint that does not record the setting cannot say
which one its weights expect, and the wrong one gives a bundle that agrees with the real model at chance
while every parity check passes (the reference makes the same assumption). The first convolution's
BatchNorm remembers the statistics of what that convolution saw in training: on the user's images, the
per-channel variance of its output matches the BatchNorm's running variance under the setting the model
was trained with, and misses it by a wide margin under the other (mean |log variance ratio| 0.04-0.07 for
the right one, ~1.6 for the wrong one on the two models measured for issue 17). When neither fits, the
preprocessing (mean/std, resize) is probably not the model's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

STRONG_RATIO = 3.0  # the worse setting must miss by 3× the better one's mismatch to count as evidence
FITS = 0.5  # mean |log variance ratio| below this: the first layer sees what it saw in training
MIN_IMAGES = 16


@dataclasses.dataclass(frozen=True)
class TransformEvidence:
    mismatch: dict[bool, float]  # transform_input setting → mean |log(variance / running variance)|
    images: int

    @property
    def best(self) -> bool:
        return min(self.mismatch, key=lambda setting: self.mismatch[setting])

    @property
    def strong(self) -> bool:
        better, worse = sorted(self.mismatch.values())
        return self.images >= MIN_IMAGES and better < FITS and worse >= STRONG_RATIO * max(better, 1e-3)

    @property
    def preprocessing_fits(self) -> bool:
        return min(self.mismatch.values()) < FITS

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "first convolution's output variance vs its BatchNorm running variance (mean |log ratio|)",
            "mismatch_transform_on": round(self.mismatch[True], 4),
            "mismatch_transform_off": round(self.mismatch[False], 4),
            "images": self.images,
            "strong": self.strong,
        }


FIRST_LAYERS = ("conv1", "Conv2d_1a_3x3")  # GoogLeNet's and Inception v3's BasicConv2d: conv then bn


def _first_layer(module: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    conv1 = next((getattr(module, name) for name in FIRST_LAYERS if hasattr(module, name)), None)
    conv, bn = getattr(conv1, "conv", None), getattr(conv1, "bn", None)
    if not isinstance(conv, torch.nn.Conv2d) or not isinstance(bn, torch.nn.BatchNorm2d):
        return None
    if bn.running_var is None:
        return None
    return conv, bn


def transform_input_evidence(module: torch.nn.Module, inputs: np.ndarray) -> TransformEvidence | None:
    """The mismatch of each setting on `inputs` (preprocessed NCHW float32), or None for a model without
    transform_input and a first conv + BatchNorm (GoogLeNet's conv1, Inception v3's Conv2d_1a_3x3) or without images."""
    layer = _first_layer(module)
    if layer is None or len(inputs) == 0 or not hasattr(module, "transform_input"):
        return None
    conv, bn = layer
    running = bn.running_var.detach().double()
    alive = running > 1e-6  # channels pruned to nothing or never active carry no evidence
    if not bool(alive.any()):
        return None
    original = module.transform_input
    mismatch: dict[bool, float] = {}
    try:
        with torch.inference_mode():
            batch = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
            for setting in (True, False):
                module.transform_input = setting
                out = conv(module._transform_input(batch)).double()  # type: ignore[operator]
                variance = out.var(dim=(0, 2, 3), unbiased=False)
                ratio = (variance[alive] + bn.eps) / (running[alive] + bn.eps)
                mismatch[setting] = float(ratio.log().abs().mean())
    finally:
        module.transform_input = original
    if not all(np.isfinite(list(mismatch.values()))):  # images without variance (all one colour) tell nothing
        return None
    return TransformEvidence(mismatch, len(inputs))
