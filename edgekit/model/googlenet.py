"""Building the deployable torchvision GoogLeNet: eval mode, auxiliary classifiers gone."""

from __future__ import annotations

import torch
from torchvision.models import GoogLeNet, googlenet

AUX_PREFIXES = ("aux1.", "aux2.")


def build_googlenet(num_classes: int, transform_input: bool, aux_logits: bool = False) -> GoogLeNet:
    """An uninitialised torchvision GoogLeNet (weights come from a checkpoint, never a download).

    `aux_logits=False` leaves out the auxiliary classifiers: they exist only to help training and
    must not reach pruning or export.
    """
    model = googlenet(
        weights=None,
        num_classes=num_classes,
        aux_logits=aux_logits,
        transform_input=transform_input,
        init_weights=False,
    )
    return model


def deployable(model: GoogLeNet) -> GoogLeNet:
    """Eval mode without auxiliary heads, so forward() returns plain logits [N, classes]."""
    model.aux_logits = False
    model.aux1 = None
    model.aux2 = None
    return model.eval()


def ensure_weights_initialised(model: torch.nn.Module) -> None:
    """Called by training code that starts from scratch: torchvision's own init scheme."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            torch.nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)
        elif isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.constant_(module.weight, 1)
            torch.nn.init.constant_(module.bias, 0)
