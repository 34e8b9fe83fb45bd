"""Which side of edgekit is installed: the device side (`pip install edgekit`) or also the workstation's
(`pip install 'edgekit[workstation]'`), and the error for a workstation command on a device install."""

from __future__ import annotations

import importlib.util
import sys

from edgekit.core.errors import EdgekitError

# What compile, prune, finetune and report import; none of it is in the device install.
WORKSTATION_MODULES = ("torch", "torchvision", "onnx", "onnxruntime", "torch_pruning", "matplotlib")
WORKSTATION_PYTHON = (3, 10)


def workstation_install_command() -> str:
    return "pip install 'edgekit[workstation]'"


def missing_modules(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def require_workstation(command: str, modules: tuple[str, ...] = WORKSTATION_MODULES) -> None:
    """Refuse a workstation command on a device install (or an old Python) with what to do instead."""
    if sys.version_info < WORKSTATION_PYTHON:
        here = ".".join(map(str, sys.version_info[:3]))
        raise EdgekitError(
            f"`edgekit {command}` runs on the workstation side, which needs Python 3.10 or newer (this is {here}); "
            "run it on your workstation and copy the bundle here"
        )
    missing = missing_modules(modules)
    if missing:
        raise EdgekitError(
            f"`edgekit {command}` needs the workstation extra ({', '.join(missing)} not installed): "
            f"{workstation_install_command()}"
        )
