"""How exported ONNX node names map to layer groups: "/<group>/.../<op>".

torch.onnx names each node after the module path it came from, so the first path component is the
block (GoogLeNet's "inception4a", "fc", ...). Ops directly under the model ("/Mul_1", "/Concat",
"/Flatten": transform_input's re-normalisation and the flatten) form the group "top-level". The
quantizers of every backend and the exporter's readers share this convention.
"""

from __future__ import annotations

TOP_LEVEL = "top-level"


def group_of(node_name: str) -> str:
    parts = node_name.split("/")
    return parts[1] if len(parts) > 2 else TOP_LEVEL
