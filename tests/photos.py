"""Real photos and torchvision's own eval transform: what every preprocessing test compares against."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image
from torchvision import transforms

from edgekit.data.preprocess import PreprocessSpec

TORCHVISION_MODES = {
    "bilinear": transforms.InterpolationMode.BILINEAR,
    "bicubic": transforms.InterpolationMode.BICUBIC,
    "nearest": transforms.InterpolationMode.NEAREST,
}


@functools.cache
def sample_photos() -> dict[str, np.ndarray]:
    """scikit-learn's two real JPEG photos (640×427), and a 1280×854 mosaic of them for a larger downscale."""
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    mosaic = np.concatenate([np.concatenate([china, flower], 1), np.concatenate([flower, china], 1)], 0)
    return {"china": china, "flower": flower, "mosaic": np.ascontiguousarray(mosaic)}


def torchvision_eval(image: Image.Image | np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize + CenterCrop + ToTensor + Normalize, as torchvision computes them on a PIL image."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    pipeline = transforms.Compose(
        [
            transforms.Resize(spec.resize, interpolation=TORCHVISION_MODES[spec.interpolation]),
            transforms.CenterCrop(spec.crop),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )
    return pipeline(image).numpy()
