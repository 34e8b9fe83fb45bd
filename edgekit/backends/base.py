"""What every backend is, and the table each declares so a request is checked before slow work."""

from __future__ import annotations

import abc
import dataclasses
import importlib.util
from pathlib import Path
from typing import ClassVar

import numpy as np


@dataclasses.dataclass(frozen=True)
class Capabilities:
    devices: frozenset[str]  # target kinds it runs on: "cpu", "gpu"
    arches: frozenset[str]  # machine architectures it has builds for
    precisions: frozenset[str]
    model_suffix: str  # the file it runs, e.g. ".onnx"
    python_module: str  # importable name; its absence means "not installed"
    install_hint: str  # what to run when it is missing


class Backend(abc.ABC):
    """One inference runtime, holding one loaded model.

    `run` takes a float32 NCHW batch whose size the model's input accepts (the caller splits
    batches for a static-batch model) and returns the model's first output unchanged.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, model_path: Path, threads: int) -> None:
        self.model_path = model_path
        self.threads = threads

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the runtime can be used here, else a sentence saying how to get it."""
        if importlib.util.find_spec(cls.capabilities.python_module) is None:
            return f"{cls.name} is not installed ({cls.capabilities.install_hint})"
        return None

    @classmethod
    @abc.abstractmethod
    def versions(cls) -> dict[str, str]:
        """Library versions recorded in manifests and benchmark results."""

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray: ...
