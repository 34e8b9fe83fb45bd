"""edgekit: turn a fine-tuned torchvision GoogLeNet into a measured, deployable edge bundle.

Heavy modules (torch, onnxruntime, openvino) are imported lazily so that `import edgekit` and
`edgekit --help` stay instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pathlib import Path

    from edgekit.runtime import BundleModel


def load(bundle: str | Path, backend: str | None = None, threads: int | None = None) -> BundleModel:
    """Open a compiled bundle (hashes verified) for prediction: `edgekit.load(dir).predict(images)`."""
    from edgekit.runtime import BundleModel

    return BundleModel.open(bundle, backend=backend, threads=threads)


__all__ = ["__version__", "load"]
