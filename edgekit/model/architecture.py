"""A pruned model's shape as data, so its checkpoint loads with no pruning code re-run.

Structured pruning only changes channel counts; every layer, kernel and connection of the torchvision
model stays. So the architecture is fully described by the torchvision builder name plus, per layer,
Conv2d `[in, out, groups]` (depthwise convolutions lose groups with their channels), Linear `[in, out]` and
BatchNorm2d `[features]`. A checkpoint stores that map under CHANNEL_PLAN_KEY — plain ints and strings,
readable with `weights_only=True`. Format 1 (GoogLeNet only, before other families) left BatchNorm out:
each conv's `bn` sibling followed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from edgekit.core.errors import EdgekitError

CHANNEL_PLAN_KEY = "channel_plan"
PLAN_FORMAT = 2
READABLE_FORMATS = (1, 2)
PROBE_SIZE = 96  # the plan must run at this input size (Inception v3 needs 75 or more)


def channel_plan(model: nn.Module) -> dict[str, Any]:
    """`{"format": 2, "layers": {name: shape}}` for every Conv2d, Linear and BatchNorm2d of `model`."""
    layers: dict[str, list[int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            layers[name] = [module.in_channels, module.out_channels, module.groups]
        elif isinstance(module, nn.Linear):
            layers[name] = [module.in_features, module.out_features]
        elif isinstance(module, nn.BatchNorm2d):
            layers[name] = [module.num_features]
    return {"format": PLAN_FORMAT, "layers": layers}


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels per Conv2d: the before/after table of a pruning report."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _check_plan(plan: Any, model: nn.Module, arch: str) -> dict[str, tuple[int, ...]]:
    if (
        not isinstance(plan, Mapping)
        or plan.get("format") not in READABLE_FORMATS
        or not isinstance(plan.get("layers"), Mapping)
    ):
        raise EdgekitError(
            f"the checkpoint's {CHANNEL_PLAN_KEY} is not an edgekit channel plan (format {PLAN_FORMAT}); "
            "re-create it with `edgekit prune`"
        )
    modules = dict(model.named_modules())
    layers: dict[str, tuple[int, ...]] = {}
    for name, shape in plan["layers"].items():
        module = modules.get(name)
        if not isinstance(module, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
            raise EdgekitError(
                f"the checkpoint's channel plan names {name!r}, which is not a conv, linear or batch-norm layer "
                f"of {arch}"
            )
        expected = _expected_length(module, plan["format"])
        if not (
            isinstance(shape, list | tuple)
            and len(shape) in expected
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
        ):
            raise EdgekitError(
                f"the checkpoint's channel plan gives {name!r} the shape {shape!r}; expected {expected[-1]} "
                "positive integers"
            )
        layers[name] = tuple(shape)
    return layers


def _expected_length(module: nn.Module, plan_format: int) -> tuple[int, ...]:
    if isinstance(module, nn.Conv2d):
        return (2,) if plan_format == 1 else (3,)
    return (2,) if isinstance(module, nn.Linear) else (1,)


def apply_channel_plan(model: nn.Module, plan: Any, arch: str) -> nn.Module:
    """Resize `model`'s layers in place to the plan's channel counts (weights are loaded afterwards)."""
    layers = _check_plan(plan, model, arch)
    for name, shape in layers.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, attr)
        new: nn.Module
        if isinstance(old, nn.Conv2d):
            inputs, outputs = shape[0], shape[1]
            groups = shape[2] if len(shape) == 3 else old.groups
            if inputs % groups or outputs % groups:
                raise EdgekitError(
                    f"the checkpoint's channel plan gives {name!r} {groups} groups for {shape[:2]} channels"
                )
            new = nn.Conv2d(
                inputs,
                outputs,
                old.kernel_size,
                stride=old.stride,
                padding=old.padding,
                dilation=old.dilation,
                groups=groups,
                bias=old.bias is not None,
            )
            bn = getattr(parent, "bn", None)
            if len(shape) == 2 and isinstance(bn, nn.BatchNorm2d):  # format 1: BasicConv2d's bn follows its conv
                parent.bn = nn.BatchNorm2d(outputs, eps=bn.eps, momentum=bn.momentum)
        elif isinstance(old, nn.Linear):
            new = nn.Linear(shape[0], shape[1], bias=old.bias is not None)
        else:
            new = nn.BatchNorm2d(shape[0], eps=old.eps, momentum=old.momentum, affine=old.affine)
        setattr(parent, attr, new)
    with torch.no_grad():  # the plan must describe a network that runs: catch a bad concat now
        try:
            model.eval()(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE))
        except RuntimeError as exc:
            raise EdgekitError(f"the checkpoint's channel plan does not describe a working {arch} ({exc})") from None
    return model
