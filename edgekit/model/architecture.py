"""A pruned GoogLeNet's shape as data, so its checkpoint loads with no pruning code re-run.

Structured pruning only changes channel counts; every layer, kernel and concat of torchvision's
GoogLeNet stays. So the architecture is fully described by `[in, out]` channels per Conv2d (its
BatchNorm follows the conv it normalises) and `[in, out]` features of the classifier. A checkpoint
stores that map under CHANNEL_PLAN_KEY — plain ints and strings, readable with `weights_only=True`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from edgekit.core.errors import EdgekitError

CHANNEL_PLAN_KEY = "channel_plan"
PLAN_FORMAT = 1


def channel_plan(model: nn.Module) -> dict[str, Any]:
    """`{"format": 1, "layers": {name: [in, out]}}` for every Conv2d and Linear of `model`."""
    layers: dict[str, list[int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            layers[name] = [module.in_channels, module.out_channels]
        elif isinstance(module, nn.Linear):
            layers[name] = [module.in_features, module.out_features]
    return {"format": PLAN_FORMAT, "layers": layers}


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels per Conv2d: the before/after table of a pruning report."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _check_plan(plan: Any, model: nn.Module) -> dict[str, tuple[int, int]]:
    if (
        not isinstance(plan, Mapping)
        or plan.get("format") != PLAN_FORMAT
        or not isinstance(plan.get("layers"), Mapping)
    ):
        raise EdgekitError(
            f"the checkpoint's {CHANNEL_PLAN_KEY} is not an edgekit channel plan (format {PLAN_FORMAT}); "
            "re-create it with `edgekit prune`"
        )
    modules = dict(model.named_modules())
    layers: dict[str, tuple[int, int]] = {}
    for name, shape in plan["layers"].items():
        module = modules.get(name)
        if not isinstance(module, nn.Conv2d | nn.Linear):
            raise EdgekitError(f"the checkpoint's channel plan names {name!r}, which is not a GoogLeNet conv or linear")
        if not (
            isinstance(shape, list | tuple) and len(shape) == 2 and all(isinstance(n, int) and n > 0 for n in shape)
        ):
            raise EdgekitError(f"the checkpoint's channel plan gives {name!r} the shape {shape!r}; expected [in, out]")
        layers[name] = (shape[0], shape[1])
    return layers


def apply_channel_plan(model: nn.Module, plan: Any) -> nn.Module:
    """Resize `model`'s layers in place to the plan's channel counts (weights are loaded afterwards)."""
    layers = _check_plan(plan, model)
    for name, (inputs, outputs) in layers.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, attr)
        if isinstance(old, nn.Conv2d):
            new: nn.Module = nn.Conv2d(
                inputs,
                outputs,
                old.kernel_size,
                stride=old.stride,
                padding=old.padding,
                dilation=old.dilation,
                groups=old.groups,
                bias=old.bias is not None,
            )
            bn = getattr(parent, "bn", None)
            if isinstance(bn, nn.BatchNorm2d):  # torchvision's BasicConv2d: conv then bn
                parent.bn = nn.BatchNorm2d(outputs, eps=bn.eps, momentum=bn.momentum)
        else:
            new = nn.Linear(inputs, outputs, bias=old.bias is not None)
        setattr(parent, attr, new)
    with torch.no_grad():  # the plan must describe a network that runs: catch a bad concat now
        crop = 64
        try:
            model.eval()(torch.zeros(1, 3, crop, crop))
        except RuntimeError as exc:
            raise EdgekitError(f"the checkpoint's channel plan does not describe a working GoogLeNet ({exc})") from None
    return model
