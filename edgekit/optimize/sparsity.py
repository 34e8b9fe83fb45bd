"""2:4 semi-structured sparsity: in every group of 4 consecutive input channels, at most 2 weights
are non-zero — the pattern Ampere-and-newer sparse tensor cores (Orin, RTX 30+) accelerate when
TensorRT's sparse-weights option is on. CPU runtimes execute the zeros like any other weight.

Masks come from magnitude (keep the 2 largest |w| per group). During recovery they are held with
`torch.nn.utils.prune.custom_from_mask`, so the optimizer cannot refill the zeros; `finalize` makes
them permanent. `is_2_4_sparse` is the independent checker used on both PyTorch and ONNX weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

PATTERN = "2:4"
GROUP = 4
KEEP = 2


def eligible_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """Dense convolutions whose input channels split into groups of 4 (TensorRT's requirement).

    The first conv (3 input channels) cannot be; the classifier is left dense on purpose: it is a
    tiny share of the work and the layer where zeroing half the weights costs most accuracy.
    """
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and module.groups == 1 and module.in_channels % GROUP == 0
    }


def _input_channels_last(weight: torch.Tensor) -> torch.Tensor:
    """[out, in, kh, kw] → [out, kh, kw, in]: groups of 4 run along the input-channel axis."""
    return weight.permute(0, 2, 3, 1)


def mask_2_4(weight: torch.Tensor) -> torch.Tensor:
    """1 where |w| is among the 2 largest of its group of 4 input channels, else 0."""
    moved = _input_channels_last(weight.detach().abs())
    groups = moved.reshape(-1, GROUP)
    keep = groups.topk(KEEP, dim=1).indices
    mask = torch.zeros_like(groups).scatter_(1, keep, 1.0)
    return mask.reshape(moved.shape).permute(0, 3, 1, 2).contiguous()


def apply_2_4(model: nn.Module) -> list[str]:
    """Zero 2 of every 4 weights in each eligible layer, holding the mask through later training."""
    layers = eligible_layers(model)
    for module in layers.values():
        torch_prune.custom_from_mask(module, "weight", mask_2_4(module.weight))
    return list(layers)


def finalize(model: nn.Module) -> None:
    """Fold the masks into the weights (drops the `weight_orig`/`weight_mask` pair)."""
    for module in model.modules():
        if torch_prune.is_pruned(module) and hasattr(module, "weight_mask"):
            torch_prune.remove(module, "weight")


def is_2_4_sparse(weight: np.ndarray | torch.Tensor, channel_axis: int = 1) -> bool:
    """True when every group of 4 consecutive entries along `channel_axis` has at least 2 zeros."""
    array = weight.detach().cpu().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
    if array.ndim < 2 or array.shape[channel_axis] % GROUP:
        return False
    moved = np.moveaxis(array, channel_axis, -1).reshape(-1, GROUP)
    return bool(np.all(np.count_nonzero(moved, axis=1) <= GROUP - KEEP))


def sparse_layers(model: nn.Module) -> list[str]:
    """Names of the model's convolutions whose weights follow the 2:4 pattern."""
    return [name for name, module in eligible_layers(model).items() if is_2_4_sparse(module.weight)]


def onnx_sparse_weights(path: str) -> tuple[int, int]:
    """(2:4-sparse, eligible) 4-D conv weights in an ONNX file: the pattern must survive export."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    weights = {init.name: init for init in model.graph.initializer}
    sparse = eligible = 0
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weights:
            continue
        array = numpy_helper.to_array(weights[node.input[1]])
        if array.ndim == 4 and array.shape[1] % GROUP == 0:
            eligible += 1
            sparse += is_2_4_sparse(array)
    return sparse, eligible
