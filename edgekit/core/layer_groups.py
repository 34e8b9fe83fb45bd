"""How exported ONNX node names map to layer groups, the units the accuracy guard can keep in FP32.

torch.onnx names each node after the module path it came from ("/inception4a/branch2/branch2.0/conv/Conv",
"/layer3/layer3.1/conv1/Conv", "/features/features.5/features.5.0/block/..."). The group is the block:
the first path component (GoogLeNet's "inception4a", "fc"), except where that component is a container
of blocks — a Sequential whose children are named "<container>.<n>" (ResNet's "layer3" → "layer3.1") or
one of torchvision's body containers (`features`, `trunk_output` → "features.5", "features.denseblock3").
Ops directly under the model ("/Mul_1", "/Flatten": transform_input's re-normalisation, the flatten) form
the group "top-level". The quantizers of every backend and the exporter's readers share this convention.
"""

from __future__ import annotations

from collections.abc import Iterable

TOP_LEVEL = "top-level"
BODY_CONTAINERS = ("features", "trunk_output")  # torchvision's Sequential bodies whose children are the blocks


def _components(node_name: str) -> tuple[str, ...]:
    """The module path of a node: its name's components without the op (empty for top-level ops)."""
    parts = node_name.split("/")
    return tuple(parts[1:-1]) if len(parts) > 2 and parts[0] == "" else ()


def _group_path(node_name: str) -> tuple[str, ...]:
    path = _components(node_name)
    if len(path) >= 2 and (path[1].startswith(path[0] + ".") or path[0] in BODY_CONTAINERS):
        return path[:2]
    return path[:1]


def group_of(node_name: str) -> str:
    path = _group_path(node_name)
    if not path:
        return TOP_LEVEL
    if len(path) == 1 or path[1].startswith(path[0] + "."):
        return path[-1]
    return f"{path[0]}.{path[1]}"


def group_prefix(node_names: Iterable[str], group: str) -> str | None:
    """The node-name prefix ("/layer3/layer3.1/") shared by `group`'s nodes (None for top-level or unknown)."""
    for name in node_names:
        if group != TOP_LEVEL and group_of(name) == group:
            return "/" + "/".join(_group_path(name)) + "/"
    return None


def groups_in_order(node_names: Iterable[str]) -> tuple[str, ...]:
    """The groups of a graph's nodes, each once, in the order the graph first uses them (its forward order)."""
    return tuple(dict.fromkeys(group_of(name) for name in node_names))
