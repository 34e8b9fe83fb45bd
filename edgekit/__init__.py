"""edgekit: turn a fine-tuned torchvision GoogLeNet into a measured, deployable edge bundle.

Heavy modules (torch, onnxruntime, openvino) are imported lazily so that `import edgekit` and
`edgekit --help` stay instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekit.core.versions import EDGEKIT_VERSION as __version__

if TYPE_CHECKING:
    from pathlib import Path

    from edgekit.runtime.model import BundleModel


def load(
    bundle: str | Path,
    backend: str | None = None,
    threads: int | None = None,
    trust_engine_host_code: bool = False,
    cuda_graph: bool = False,
) -> BundleModel:
    """Open a compiled bundle (hashes verified) for prediction: `edgekit.load(dir).predict(images)`.

    TensorRT bundles run the engine built for this GPU and TensorRT version; a version-compatible
    engine carries host code and loads only with `trust_engine_host_code=True`.
    """
    from edgekit.runtime.model import BundleModel

    options = {"trust_engine_host_code": trust_engine_host_code, "cuda_graph": cuda_graph}
    return BundleModel.open(bundle, backend=backend, threads=threads, options=options)


__all__ = ["__version__", "load"]
