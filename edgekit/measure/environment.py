"""The machine and library versions a number was measured with: without them it means nothing."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from typing import Any

from edgekit.core.cpu import cpu_features, cpu_model
from edgekit.core.versions import EDGEKIT_VERSION

_LIBRARIES = (
    "numpy",
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "openvino",
    "nncf",
    "pillow",
    "ai-edge-litert",
    "litert-torch",
    "ai-edge-quantizer",
    "cuda-bindings",
)


def environment(threads: int) -> dict[str, Any]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "edgekit": EDGEKIT_VERSION,
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),  # the instruction sets that decide INT8/BF16 speed
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "threads": threads,
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "command": " ".join(sys.argv),
    }
