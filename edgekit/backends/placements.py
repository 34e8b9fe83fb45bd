"""Where a Q/DQ INT8 file's quantize/dequantize pairs go, by who runs it (`qdq.py` explains each). Kept apart
from `qdq.py` so that the CLI can offer the choices without importing the quantizer."""

from __future__ import annotations

PLACEMENTS = ("cpu", "tensorrt")
RULE_CHECKED_PLACEMENTS = ("tensorrt",)  # placements whose files must meet qdq_rules.py (TensorRT's parser)
