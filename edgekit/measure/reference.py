"""The FP32 model a bundle is compared with: the PyTorch module, or the user's own ONNX file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TorchReference:
    """PyTorch eager FP32, in eval mode, aux heads gone: what the user trained."""

    kind = "pytorch"
    output_kind = "logits"

    def __init__(self, module: object, threads: int, channels_last: bool = False) -> None:
        import torch

        torch.set_num_threads(threads)
        self._torch = torch
        self._module = module
        self._channels_last = channels_last
        if channels_last:
            self._module = module.to(memory_format=torch.channels_last)  # type: ignore[attr-defined]

    def run(self, batch: np.ndarray) -> np.ndarray:
        tensor = self._torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self._channels_last:
            tensor = tensor.contiguous(memory_format=self._torch.channels_last)
        with self._torch.inference_mode():
            return self._module(tensor).numpy()  # type: ignore[operator]


class OnnxReference:
    """A user's ONNX file run as-is in ONNX Runtime."""

    def __init__(
        self, path: Path, threads: int, output_kind: str, static_batch: int | None, data: bytes | None = None
    ) -> None:
        """`data`: the file's bytes with external data taken in (`self_contained_bytes`), read if not given."""
        from edgekit.backends.base import ModelFiles
        from edgekit.backends.registry import reference_backend
        from edgekit.runtime.model import Runner

        self.output_kind = output_kind
        backend = reference_backend()
        self.kind = backend.name  # the reference runtime (backends/registry.py)
        if data is None:
            from edgekit.export.onnx_file import self_contained_bytes

            data = self_contained_bytes(path)
        self._runner = Runner(backend, ModelFiles(path.name, {path.name: data}), threads, static_batch)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._runner.run(batch)


def load_reference(
    path: Path,
    threads: int,
    transform_input: bool | None = None,
    trust_pickle: bool = False,
    arch: str | None = None,
) -> TorchReference | OnnxReference:
    """The FP32 reference for a checkpoint or ONNX path, loaded the way `compile` loaded it."""
    from edgekit.core.install import require_workstation

    if path.suffix.lower() == ".onnx":
        require_workstation(f"bench --reference {path.name}", ("onnx",))  # reads the file's interface
        from edgekit.export.onnx_file import inspect_onnx

        info = inspect_onnx(path)
        return OnnxReference(path, threads, info.output_kind, info.batch)
    require_workstation(f"bench --reference {path.name}", ("torch", "torchvision"))
    from edgekit.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(path, trust_pickle=trust_pickle, transform_input=transform_input, arch=arch)
    return TorchReference(loaded.module, threads)
