"""What each transfer-learning mode trains, as data: frozen blocks, active auxiliary heads, LR groups.

torchvision GoogLeNet's children in forward order (shapes at 224×224):
stem conv1 → maxpool1 → conv2 → conv3 → maxpool2 (192×28×28) → inception3a → 3b → maxpool3 (480×14×14)
→ inception4a → 4b → 4c → 4d → 4e → maxpool4 (832×7×7) → inception5a → 5b (1024×7×7) → avgpool → fc.
aux1 reads inception4a's output and aux2 inception4d's, so an auxiliary head only helps when the block
it reads from is still trained: otherwise its gradient stops at a frozen layer and it is switched off.
"""

from __future__ import annotations

import torch

from edgekit.core.errors import EdgekitError
from edgekit.model.layout import BLOCKS

AUX_SOURCE = {"aux1": "inception4a", "aux2": "inception4d"}
MODES = ("feature-extract", "finetune", "hybrid")


def frozen_blocks(mode: str, freeze_until: str | None) -> tuple[str, ...]:
    if mode not in MODES:
        raise EdgekitError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "hybrid":
        if freeze_until is None:
            raise EdgekitError("--mode hybrid needs --freeze-until BLOCK (e.g. inception4a)")
        if freeze_until not in BLOCKS:
            raise EdgekitError(
                f"--freeze-until {freeze_until!r} is not a GoogLeNet block; choose one of {', '.join(BLOCKS)}"
            )
        return BLOCKS[: BLOCKS.index(freeze_until) + 1]
    if freeze_until is not None:
        raise EdgekitError("--freeze-until applies to --mode hybrid only")
    return BLOCKS if mode == "feature-extract" else ()


def active_aux_heads(frozen: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(head for head, source in AUX_SOURCE.items() if source not in frozen)


def apply_freeze(model: torch.nn.Module, frozen: tuple[str, ...]) -> None:
    """requires_grad=False for frozen blocks and for auxiliary heads that cannot help."""
    inactive = set(AUX_SOURCE) - set(active_aux_heads(frozen))
    for name in (*frozen, *inactive):
        module = getattr(model, name, None)
        if module is not None:
            for parameter in module.parameters():
                parameter.requires_grad_(False)


def set_train_mode(model: torch.nn.Module, frozen: tuple[str, ...]) -> None:
    """Train mode, except frozen blocks stay in eval so their BatchNorm statistics stay fixed."""
    model.train()
    inactive = set(AUX_SOURCE) - set(active_aux_heads(frozen))
    for name in (*frozen, *inactive):
        module = getattr(model, name, None)
        if module is not None:
            module.eval()


def parameter_groups(
    model: torch.nn.Module, lr: float, body_lr_mult: float, pretrained: bool
) -> list[dict[str, object]]:
    """New heads (fc, aux) at `lr`; a pretrained body at `lr * body_lr_mult` so it is adjusted, not erased."""
    head, body = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (head if name.startswith(("fc.", "aux1.", "aux2.")) else body).append(parameter)
    groups: list[dict[str, object]] = [{"params": head, "lr": lr, "name": "head"}]
    if body:
        groups.append({"params": body, "lr": lr * (body_lr_mult if pretrained else 1.0), "name": "body"})
    return groups
