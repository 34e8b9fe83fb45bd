"""Starting weights for `edgekit finetune`: ImageNet weights on disk, an edgekit checkpoint, or none.

The classifier (and the auxiliary classifiers' last layers) are replaced when the class count
differs; everything else must be a torchvision GoogLeNet or the file is refused with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from edgekit.core.errors import EdgekitError
from edgekit.core.files import sha256_file
from edgekit.data.preprocess import PreprocessSpec
from edgekit.model.architecture import CHANNEL_PLAN_KEY
from edgekit.model.checkpoint import check_architecture, class_names_from, read_weights
from edgekit.model.googlenet import build_googlenet, ensure_weights_initialised

HEAD_PREFIXES = ("fc.", "aux1.fc2.", "aux2.fc2.")


@dataclasses.dataclass
class StartingPoint:
    model: torch.nn.Module  # GoogLeNet with aux heads, ready to train
    transform_input: bool
    pretrained: bool
    description: str
    sha256: str | None
    preprocessing: PreprocessSpec | None  # recorded in an edgekit checkpoint


def starting_point(weights: str, class_names: tuple[str, ...], trust_pickle: bool = False) -> StartingPoint:
    num_classes = len(class_names)
    if weights == "none":
        # torchvision only turns transform_input on together with ImageNet weights.
        model = build_googlenet(num_classes, transform_input=False, aux_logits=True)
        ensure_weights_initialised(model)
        return StartingPoint(model, False, False, "from scratch (random init)", None, None)

    path = Path(weights)
    state, _, meta = read_weights(path, trust_pickle)
    if CHANNEL_PLAN_KEY in meta:
        raise EdgekitError(
            f"{path} is a pruned GoogLeNet; fine-tune it as part of pruning (edgekit prune --recover-data DIR), "
            "or fine-tune the unpruned model first and prune afterwards"
        )
    recorded = meta.get("transform_input")
    transform_input = bool(recorded) if isinstance(recorded, bool) else True
    model = build_googlenet(num_classes, transform_input=transform_input, aux_logits=True)
    ensure_weights_initialised(model)  # heads that are not loaded below start from torchvision's init
    check_architecture(model, state, path, ignore=("fc.", "aux1.", "aux2."))
    expected = model.state_dict()
    same_classes = _same_classes(meta, state, class_names)
    loadable = {
        k: v
        for k, v in state.items()
        if k in expected
        and tuple(v.shape) == tuple(expected[k].shape)
        and (same_classes or not k.startswith(HEAD_PREFIXES))
    }
    model.load_state_dict(loadable, strict=False)
    source_classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else "?"
    head = "classifier kept" if same_classes else f"classifier replaced ({source_classes} → {num_classes} new classes)"
    preprocessing = meta.get("preprocessing")
    return StartingPoint(
        model=model,
        transform_input=transform_input,
        pretrained=True,
        description=f"weights {path.name}: {len(loadable)} tensors loaded, {head}",
        sha256=sha256_file(path),
        preprocessing=PreprocessSpec.from_dict(dict(preprocessing)) if isinstance(preprocessing, Mapping) else None,
    )


def _same_classes(meta: Mapping[str, Any], state: dict[str, torch.Tensor], class_names: tuple[str, ...]) -> bool:
    fc = state.get("fc.weight")
    if fc is None or fc.shape[0] != len(class_names):
        return False
    recorded = class_names_from(meta, len(class_names))
    # Same count but unknown names (a bare state_dict): keep the head, the user continues training.
    return recorded is None or tuple(recorded) == class_names
