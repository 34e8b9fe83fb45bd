"""GoogLeNet's layout as names, without torch: its blocks, and the layer groups that can stay in FP32.

Exported ONNX node names are "/<block>/.../<op>" (see `core/layer_groups.py`), so a group name here is
also how every backend's quantizer finds the group's nodes.
"""

from __future__ import annotations

from edgekit.core.layer_groups import TOP_LEVEL

BLOCKS = (
    "conv1",
    "maxpool1",
    "conv2",
    "conv3",
    "maxpool2",
    "inception3a",
    "inception3b",
    "maxpool3",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
    "maxpool4",
    "inception5a",
    "inception5b",
)

# Groups of layers that can be kept in higher precision, in forward order.
LAYER_GROUPS = (TOP_LEVEL, *BLOCKS, "avgpool", "fc")
