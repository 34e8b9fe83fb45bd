"""The run halves of the backends: one line per backend in RUNTIMES. What a device imports.

Importing this module is cheap: each backend imports its runtime only when a model is loaded. The
convert halves are listed in `converters.py`, which only the workstation side imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgekit.backends.base import Backend
from edgekit.backends.litert.run import LiteRtBackend
from edgekit.backends.onnxruntime.run import OnnxRuntimeBackend
from edgekit.backends.openvino.run import OpenVinoBackend
from edgekit.backends.tensorrt.run import TensorRTBackend
from edgekit.core.errors import EdgekitError

RUNTIMES: dict[str, type[Backend]] = {
    cls.name: cls for cls in (OnnxRuntimeBackend, OpenVinoBackend, TensorRTBackend, LiteRtBackend)
}
# Runs any ONNX file on any CPU: the FP32 reference for an ONNX source, and the check of portable files.
REFERENCE_RUNTIME = OnnxRuntimeBackend


def get_backend(name: str) -> type[Backend]:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise EdgekitError(f"unknown backend {name!r}; known backends: {', '.join(RUNTIMES)}") from None


def reference_backend() -> type[Backend]:
    return REFERENCE_RUNTIME


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


def usable_here(names: Iterable[str]) -> list[str]:
    """The backends among `names` that run here; a portable one (TensorRT) that is not installed compiles
    here and builds its model on the device: marked "+"."""
    usable = []
    for name in names:
        backend = RUNTIMES.get(name)
        if backend is None:
            continue
        if backend.unavailable_reason() is None:
            usable.append(name)
        elif backend.capabilities.portable_onnx:
            usable.append(f"{name}+")
    return usable


__all__ = ["RUNTIMES", "Backend", "check_support", "get_backend", "reference_backend", "usable_here"]


def run_option_flags(values: Mapping[str, Any]) -> list[str]:
    """The command-line flags that give these run options (by name) to `edgekit` on another machine, from the
    backends' own declarations (`Backend.options`); options not given (None, or a flag left off) are left out."""
    flags: list[str] = []
    for backend in RUNTIMES.values():
        for option in backend.options:
            value = values.get(option.name)
            if option.stage != "run" or value is None or (value is False and not option.switch):
                continue
            on, _, off = option.flag.partition("/")
            if option.switch:
                flags.append(on if value else off)
            elif option.choices or option.int_range is not None:
                flags += [on, str(value)]
            else:
                flags.append(on)
    return flags
