"""The machine and library versions a number was measured with: without them it means nothing."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from typing import Any

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


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "threads": threads,
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "command": " ".join(sys.argv),
    }
