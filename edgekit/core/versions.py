"""Version numbers: edgekit's own, parsing other tools' versions, and whether an optional module exists."""

from __future__ import annotations

import importlib.util
import re

EDGEKIT_VERSION = "0.1.0"


def version_tuple(version: str) -> tuple[int, ...]:
    """ "10.3.0.26" → (10, 3, 0, 26); trailing text such as "+cuda13" or "rc1" is ignored."""
    numbers = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
    if not numbers:
        raise ValueError(f"not a version: {version!r}")
    return tuple(numbers)


def sm_number(compute_capability: str) -> int:
    """87 for "8.7": the number nvcc's `sm_XX` and NVRTC's `-arch` use."""
    major, minor = compute_capability.split(".")
    return int(major) * 10 + int(minor)


def module_available(name: str) -> bool:
    """Whether `import name` would find the module (False also when its parent package is missing)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package; a module without a spec
        return False
