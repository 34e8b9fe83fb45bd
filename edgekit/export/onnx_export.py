"""PyTorch GoogLeNet → ONNX with a dynamic batch axis."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(module: torch.nn.Module, path: Path, input_size: int, opset: int) -> None:
    """Write `module` (eval mode, aux heads gone) as a single-file ONNX model.

    The TorchScript exporter is used on purpose: it honours `opset_version` (TensorRT 8.2–8.4 on
    Jetson Nano/Xavier read opset 13 at most), writes one self-contained file, and takes half a
    second. torch's dynamo exporter (the default since 2.9) always emits opset 18 and external data.
    """
    module = module.eval()
    example = torch.zeros(1, 3, input_size, input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
