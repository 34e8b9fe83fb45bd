"""Which torchvision model a plain state_dict is, from its keys and tensor shapes alone.

A state_dict names every layer and each tensor's shape, which is enough to tell ResNet-18 from 34 (more
blocks), 34 from 50 (bottlenecks), EfficientNet-B0 from B1 (more blocks) and B1 from B2 (wider). The
candidates are compared on every key except the classifier's class count; each family is built (on the
meta device: no memory, no init) only when the state_dict's top-level names are that family's, and each
member only when its parameter count (torchvision's weight metadata, for 1000 classes) is the state_dict's:
RegNet cannot be built on the meta device, and building RegNetY-128GF to rule it out would take seconds.
Where the recorded or given architecture exists it wins; this is for the checkpoints that do not say.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch

from edgekit.core.errors import EdgekitError
from edgekit.model import families

ARCH_FLAG = "--arch"


def _signature(state: Mapping[str, tuple[int, ...]]) -> frozenset[str]:
    return frozenset(key.split(".")[0] for key in state)


@functools.cache
def _family_members() -> dict[frozenset[str], list[str]]:
    """Known architectures grouped by their top-level module names (aux heads left out)."""
    grouped: dict[str, list[str]] = {}
    for arch in families.known_archs():
        grouped.setdefault(next(p for p in families.KINDS if arch.startswith(p)), []).append(arch)
    by_signature: dict[frozenset[str], list[str]] = {}
    for members in grouped.values():
        # One member tells the family's top-level names; within a family they are the same.
        by_signature.setdefault(_signature(families.shapes(members[0])), []).extend(members)
    return by_signature


def _comparable(arch: str, state: Mapping[str, tuple[int, ...]]) -> tuple[bool, str | None]:
    """(keys match, the first shape that does not) of `state` against `arch` (class count ignored)."""
    expected = families.shapes(arch)
    if set(expected) != set(state):
        return False, None
    heads = families.head_keys(arch)
    for key, shape in expected.items():
        got = state[key]
        if key in heads:
            if got[1:] != shape[1:]:
                return True, key
        elif got != shape:
            return True, key
    return True, ""


def _imagenet_parameters(shapes: Mapping[str, tuple[int, ...]]) -> int:
    """The parameter count of `shapes` with its classifier (the last 2-D weight, and its bias) at 1000 classes."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    params = {k: v for k, v in shapes.items() if not k.endswith(buffers)}
    head = next((k for k in reversed(params) if len(params[k]) == 2), None)
    total = 0
    for key, shape in params.items():
        size = 1
        for dim in shape:
            size *= dim
        if head is not None and key in (head, head.removesuffix("weight") + "bias") and shape:
            size = size // shape[0] * 1000
        total += size
    return total


@functools.cache
def _published_parameters(arch: str) -> int | None:
    import torchvision.models

    weights = next(iter(torchvision.models.get_model_weights(arch)), None)
    count = weights.meta.get("num_params") if weights is not None else None
    return int(count) if isinstance(count, int) else None


def identify(state: Mapping[str, torch.Tensor], path: object) -> str:
    """The one known architecture `state` (prefixes stripped) fits, or an EdgekitError that lists the candidates."""
    shapes = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    stripped = {k: v for k, v in shapes.items() if not k.startswith(tuple(f"{m}." for m in families.AUX_MODULES))}
    members = _family_members().get(_signature(stripped), [])
    count = _imagenet_parameters(stripped)
    counted = [arch for arch in members if _published_parameters(arch) in (count, None)]
    exact, same_keys = [], []
    for arch in counted or members:  # no count matches: compare them all, to say which layers differ
        keys_match, wrong = _comparable(arch, stripped)
        if keys_match and wrong == "":
            exact.append(arch)
        elif keys_match:
            same_keys.append((arch, wrong))
    if len(exact) == 1:
        return exact[0]
    if exact:
        raise EdgekitError(f"{path} fits several architectures ({', '.join(exact)}); say which with {ARCH_FLAG} NAME")
    if same_keys:
        arch, key = same_keys[0]
        raise EdgekitError(
            f"{path} has the layers of {', '.join(a for a, _ in same_keys)} but not their shapes (e.g. {key}: "
            f"{shapes[key or '']}, {arch} has {families.shapes(arch)[key or '']}); a pruned model needs the checkpoint "
            f"`edgekit prune` wrote (it records the new shapes); otherwise pass {ARCH_FLAG} NAME"
        )
    family = ", ".join(members[:8]) if members else None
    raise EdgekitError(
        f"{path} is not a torchvision model edgekit knows"
        + (f" (its layers are named like {family}, but the keys differ)" if family else "")
        + f"; pass {ARCH_FLAG} NAME if it is one of: {families.describe_known()}"
    )
