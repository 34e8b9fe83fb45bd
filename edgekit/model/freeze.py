"""What each transfer-learning mode trains, as data: frozen blocks, active auxiliary heads, LR groups.

The blocks are the model's own, in forward order (`model/families.blocks`): GoogLeNet's conv1 … inception5b,
ResNet's conv1, bn1, …, layer1 … layer4, MobileNet's and EfficientNet's features.0 … features.N.
"feature-extract" freezes them all and trains the classifier; "hybrid" freezes up to `--freeze-until`.
An auxiliary head (GoogLeNet's aux1/aux2 read inception4a/4d, Inception v3's AuxLogits reads Mixed_6e)
only helps when the block it reads from is still trained: otherwise its gradient stops at a frozen layer
and it is switched off.
"""

from __future__ import annotations

import torch

from edgekit.core.errors import EdgekitError
from edgekit.model.families import AuxHead

MODES = ("feature-extract", "finetune", "hybrid")


def check_mode(mode: str, freeze_until: str | None) -> None:
    """The checks that need no model: called before any weights are read."""
    if mode not in MODES:
        raise EdgekitError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "hybrid" and freeze_until is None:
        raise EdgekitError("--mode hybrid needs --freeze-until BLOCK (e.g. inception4a, layer2, features.4)")
    if mode != "hybrid" and freeze_until is not None:
        raise EdgekitError("--freeze-until applies to --mode hybrid only")


def frozen_blocks(mode: str, freeze_until: str | None, blocks: tuple[str, ...], arch: str) -> tuple[str, ...]:
    check_mode(mode, freeze_until)
    if mode == "hybrid":
        if freeze_until not in blocks:
            raise EdgekitError(
                f"--freeze-until {freeze_until!r} is not a block of {arch}; choose one of {', '.join(blocks)}"
            )
        return blocks[: blocks.index(freeze_until) + 1]
    return blocks if mode == "feature-extract" else ()


def active_aux_heads(heads: tuple[AuxHead, ...], frozen: tuple[str, ...]) -> tuple[AuxHead, ...]:
    return tuple(head for head in heads if head.reads not in frozen)


def _frozen_modules(heads: tuple[AuxHead, ...], frozen: tuple[str, ...]) -> tuple[str, ...]:
    inactive = [head.module for head in heads if head not in active_aux_heads(heads, frozen)]
    return (*frozen, *inactive)


def apply_freeze(model: torch.nn.Module, heads: tuple[AuxHead, ...], frozen: tuple[str, ...]) -> None:
    """requires_grad=False for frozen blocks and for auxiliary heads that cannot help."""
    for name in _frozen_modules(heads, frozen):
        module = _submodule(model, name)
        if module is not None:
            for parameter in module.parameters():
                parameter.requires_grad_(False)


def set_train_mode(model: torch.nn.Module, heads: tuple[AuxHead, ...], frozen: tuple[str, ...]) -> None:
    """Train mode, except frozen blocks stay in eval so their BatchNorm statistics stay fixed."""
    model.train()
    for name in _frozen_modules(heads, frozen):
        module = _submodule(model, name)
        if module is not None:
            module.eval()


def _submodule(model: torch.nn.Module, name: str) -> torch.nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def parameter_groups(
    model: torch.nn.Module, head_prefixes: tuple[str, ...], lr: float, body_lr_mult: float, pretrained: bool
) -> list[dict[str, object]]:
    """New heads (classifier, aux heads' last layers) at `lr`; a pretrained body at `lr * body_lr_mult` so it
    is adjusted, not erased."""
    head, body = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (head if name.startswith(head_prefixes) else body).append(parameter)
    groups: list[dict[str, object]] = [{"params": head, "lr": lr, "name": "head"}]
    if body:
        groups.append({"params": body, "lr": lr * (body_lr_mult if pretrained else 1.0), "name": "body"})
    return groups
