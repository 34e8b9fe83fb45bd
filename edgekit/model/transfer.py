"""Starting weights for `edgekit finetune`: ImageNet weights on disk, an edgekit checkpoint, or none.

The architecture is `--arch`, else the one the file records, else the one its keys and shapes fit
(`model/identify.py`); from scratch it is `--arch` (GoogLeNet by default). The classifier (and the
auxiliary classifiers' last layers) are replaced when the class count differs; everything else must be
that torchvision model or the file is refused with the reason.
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
from edgekit.model import families
from edgekit.model.architecture import CHANNEL_PLAN_KEY
from edgekit.model.checkpoint import arch_of, check_architecture, class_names_from, read_weights


@dataclasses.dataclass
class StartingPoint:
    model: torch.nn.Module  # with its aux heads (where the family has them), ready to train
    arch: str
    transform_input: bool | None  # None: the family has no such setting
    pretrained: bool
    description: str
    sha256: str | None
    preprocessing: PreprocessSpec | None  # recorded in an edgekit checkpoint


def starting_point(
    weights: str, class_names: tuple[str, ...], trust_pickle: bool = False, arch: str | None = None
) -> StartingPoint:
    num_classes = len(class_names)
    if weights == "none":
        chosen = families.check_arch(arch or families.DEFAULT_ARCH)
        # torchvision only turns transform_input on together with ImageNet weights.
        model = families.build(chosen, num_classes, transform_input=False, aux_logits=True)
        families.initialise(model)
        off = False if families.has_transform_input(chosen) else None
        return StartingPoint(model, chosen, off, False, f"{chosen} from scratch (random init)", None, None)

    path = Path(weights)
    state, _, meta = read_weights(path, trust_pickle)
    if CHANNEL_PLAN_KEY in meta:
        raise EdgekitError(
            f"{path} is a pruned model; fine-tune it as part of pruning (edgekit prune --recover-data DIR), "
            "or fine-tune the unpruned model first and prune afterwards"
        )
    chosen, _ = arch_of(state, meta, path, arch)
    recorded = meta.get("transform_input")
    transform_input = (
        (bool(recorded) if isinstance(recorded, bool) else True) if families.has_transform_input(chosen) else None
    )
    model = families.build(chosen, num_classes, transform_input=bool(transform_input), aux_logits=True)
    families.initialise(model)  # heads that are not loaded below start from torchvision's init
    heads = families.head_prefixes(chosen)
    aux = tuple(f"{head.module}." for head in families.aux_heads(chosen))
    check_architecture(model, chosen, state, path, ignore=(*heads, *aux))
    expected = model.state_dict()
    same_classes = _same_classes(chosen, meta, state, class_names)
    loadable = {
        k: v
        for k, v in state.items()
        if k in expected and tuple(v.shape) == tuple(expected[k].shape) and (same_classes or not k.startswith(heads))
    }
    model.load_state_dict(loadable, strict=False)
    source_classes = families.num_classes_of(chosen, state) or "?"
    head = "classifier kept" if same_classes else f"classifier replaced ({source_classes} → {num_classes} new classes)"
    preprocessing = meta.get("preprocessing")
    return StartingPoint(
        model=model,
        arch=chosen,
        transform_input=transform_input,
        pretrained=True,
        description=f"{chosen} weights {path.name}: {len(loadable)} tensors loaded, {head}",
        sha256=sha256_file(path),
        preprocessing=PreprocessSpec.from_dict(dict(preprocessing)) if isinstance(preprocessing, Mapping) else None,
    )


def _same_classes(
    arch: str, meta: Mapping[str, Any], state: dict[str, torch.Tensor], class_names: tuple[str, ...]
) -> bool:
    if families.num_classes_of(arch, state) != len(class_names):
        return False
    recorded = class_names_from(meta, len(class_names))
    # Same count but unknown names (a bare state_dict): keep the head, the user continues training.
    return recorded is None or tuple(recorded) == class_names
