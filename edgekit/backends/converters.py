"""The convert halves of the backends: one line per backend in CONVERTERS. What the workstation imports.

A new backend is its folder (run.py, convert.py), one line here and one in `registry.py`, and target
files that list it.
"""

from __future__ import annotations

from edgekit.backends.base import Converter
from edgekit.backends.litert.convert import LiteRtConverter
from edgekit.backends.onnxruntime.convert import OnnxRuntimeConverter
from edgekit.backends.openvino.convert import OpenVinoConverter
from edgekit.backends.registry import check_support, get_backend
from edgekit.backends.tensorrt.convert import TensorRTConverter
from edgekit.core.errors import EdgekitError
from edgekit.targets import Target

CONVERTERS: dict[str, type[Converter]] = {
    cls.backend.name: cls for cls in (OnnxRuntimeConverter, OpenVinoConverter, TensorRTConverter, LiteRtConverter)
}


def get_converter(name: str) -> type[Converter]:
    get_backend(name)  # the error for an unknown name
    return CONVERTERS[name]


def choose_converter(target: Target, precision: str, requested: str | None) -> type[Converter]:
    """The backend that will run the bundle (its convert half), or an error naming why none can."""
    if precision not in target.precisions:
        raise EdgekitError(
            f"target {target.name} does not support precision {precision}; it supports {', '.join(target.precisions)}"
        )
    if requested is not None:
        converter = get_converter(requested)
        reason = check_support(converter.backend, target.kind, target.arch, precision) or converter.unavailable_reason()
        if reason:
            raise EdgekitError(f"backend {requested} cannot be used for target {target.name}: {reason}")
        return converter
    return usable_converters(target, precision)[0]


def usable_converters(target: Target, precision: str) -> list[type[Converter]]:
    """Every backend `target` lists for `precision` that can convert here, in the target file's order (the
    candidates compile measures when the user names none), or an error naming why none can."""
    if precision not in target.precisions:
        raise EdgekitError(
            f"target {target.name} does not support precision {precision}; it supports {', '.join(target.precisions)}"
        )
    usable, reasons = [], []
    for name in target.backends[precision]:
        found = CONVERTERS.get(name)
        if found is None:
            reasons.append(f"{name}: not a backend of this edgekit version")
            continue
        reason = check_support(found.backend, target.kind, target.arch, precision) or found.unavailable_reason()
        if reason is None:
            usable.append(found)
        else:
            reasons.append(reason)
    if usable:
        return usable
    raise EdgekitError(f"no backend of target {target.name} can run {precision} here: {'; '.join(reasons)}")
