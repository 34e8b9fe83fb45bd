"""edgekit: turn a fine-tuned torchvision classifier (GoogLeNet, ResNet, MobileNet, EfficientNet, ...) into a
measured, deployable edge bundle.

Heavy modules (torch, onnxruntime, openvino) are imported lazily so that `import edgekit` and
`edgekit --help` stay instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekit.core.versions import EDGEKIT_VERSION as __version__

if TYPE_CHECKING:
    from pathlib import Path

    from edgekit.runtime.model import BundleModel


def load(bundle: str | Path, backend: str | None = None, threads: int | None = None, **options: Any) -> BundleModel:
    """Open a compiled bundle (hashes verified) for prediction: `edgekit.load(dir).predict(images)`.

    `options` are the backends' run options, each declared by its backend (`Backend.options`, the same
    names as the command-line flags: `cuda_graph=True` for `--cuda-graph`). A backend whose model file can
    carry code loads such a file only with its trust option set (TensorRT: a version-compatible engine,
    `trust_engine_host_code=True`).
    """
    from edgekit.backends.registry import RUNTIMES
    from edgekit.runtime.model import BundleModel

    known = {option.name for runtime in RUNTIMES.values() for option in runtime.options if option.stage == "run"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"edgekit.load() got unknown option(s) {', '.join(unknown)}; run options: {sorted(known)}")
    return BundleModel.open(bundle, backend=backend, threads=threads, options=options)


__all__ = ["__version__", "load"]
