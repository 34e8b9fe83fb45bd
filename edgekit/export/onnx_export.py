"""PyTorch classifier → ONNX with a dynamic batch axis."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class _PoolAsMatmul(nn.Module):
    """AdaptiveAvgPool2d at one known input size, written as two matrix products (the same averages): the
    exporter cannot write an adaptive pool whose output size does not divide its input (VGG's 7×7 and
    AlexNet's 6×6 at any input other than 224, the small sizes fine-tuning often uses)."""

    def __init__(self, height: int, width: int, out_h: int, out_w: int) -> None:
        super().__init__()
        self.register_buffer("rows", _bins(height, out_h))  # [out_h, height]
        self.register_buffer("cols", _bins(width, out_w).t().contiguous())  # [width, out_w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.cols)


def _bins(size: int, out: int) -> torch.Tensor:
    """Row i averages input[floor(i·size/out) : ceil((i+1)·size/out)], as adaptive_avg_pool2d does."""
    weights = torch.zeros(out, size)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


def _exportable(module: nn.Module, example: torch.Tensor) -> nn.Module:
    """`module`, or a copy whose adaptive pools that torch.onnx cannot write at this input size are matmuls."""
    sizes: dict[str, tuple[int, int]] = {}
    pools = {name: m for name, m in module.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)}
    handles = [
        m.register_forward_hook(lambda _m, inputs, _o, name=name: sizes.__setitem__(name, tuple(inputs[0].shape[2:])))
        for name, m in pools.items()
    ]
    try:
        module(example)
    finally:
        for handle in handles:
            handle.remove()
    awkward = {}
    for name, (height, width) in sizes.items():
        size = pools[name].output_size
        out_h, out_w = (size, size) if isinstance(size, int) else size
        out_h, out_w = out_h or height, out_w or width
        if height % out_h or width % out_w:
            awkward[name] = _PoolAsMatmul(height, width, out_h, out_w)
    if not awkward:
        return module
    module = copy.deepcopy(module)
    for name, replacement in awkward.items():
        parent, _, attr = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, attr, replacement)
    return module


def export_onnx(module: nn.Module, path: Path, input_size: int, opset: int) -> None:
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
            _exportable(module, example),
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
