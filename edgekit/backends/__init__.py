"""Backend registry: a backend is added here, in one place, and declares what it supports.

Importing this package is cheap: each backend imports its runtime only when a model is loaded.
"""

from __future__ import annotations

from edgekit.backends.base import Backend, BuildRequest, Capabilities
from edgekit.backends.litert_backend import LiteRtBackend
from edgekit.backends.onnxruntime_backend import OnnxRuntimeBackend
from edgekit.backends.openvino_backend import OpenVinoBackend
from edgekit.backends.tensorrt import TensorRTBackend
from edgekit.errors import EdgekitError

REGISTRY: dict[str, type[Backend]] = {
    cls.name: cls for cls in (OnnxRuntimeBackend, OpenVinoBackend, TensorRTBackend, LiteRtBackend)
}


def get_backend(name: str) -> type[Backend]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise EdgekitError(f"unknown backend {name!r}; known backends: {', '.join(REGISTRY)}") from None


def check_support(backend: type[Backend], kind: str, arch: str, precision: str) -> str | None:
    """Why `backend` cannot serve this target kind/arch/precision, or None if it can."""
    caps = backend.capabilities
    if kind not in caps.devices:
        return f"{backend.name} does not run on {kind} targets"
    if arch not in caps.arches:
        return f"{backend.name} has no build for {arch}"
    if precision not in caps.precisions:
        return f"{backend.name} does not support {precision} (it supports {', '.join(sorted(caps.precisions))})"
    return None


__all__ = ["REGISTRY", "Backend", "BuildRequest", "Capabilities", "check_support", "get_backend"]
