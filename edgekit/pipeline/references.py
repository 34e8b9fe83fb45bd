"""Loading the FP32 reference for a checkpoint or ONNX path, the way `compile` loaded it."""

from __future__ import annotations

from pathlib import Path

from edgekit.measure.reference import OnnxReference, TorchReference


def load_reference(
    path: Path, threads: int, transform_input: bool | None = None, trust_pickle: bool = False
) -> TorchReference | OnnxReference:
    """The reference for a checkpoint or ONNX path, loaded the way `compile` loaded it."""
    from edgekit.core.install import require_workstation

    if path.suffix.lower() == ".onnx":
        require_workstation(f"bench --reference {path.name}", ("onnx",))  # reads the file's interface
        from edgekit.export.onnx_file import inspect_onnx

        info = inspect_onnx(path)
        return OnnxReference(path, threads, info.output_kind, info.batch)
    require_workstation(f"bench --reference {path.name}", ("torch", "torchvision"))
    from edgekit.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(path, trust_pickle=trust_pickle, transform_input=transform_input)
    return TorchReference(loaded.module, threads)
