"""What this CPU is and which instruction-set features it has: they decide INT8 and BF16 speed, so every
measurement records them (`measure.environment`) and training asks whether BF16 is native."""

from __future__ import annotations

import platform

# The features that change which kernels run: VNNI/AMX for INT8, AVX-512 BF16/AMX for BF16, dot product on Arm.
SPEED_FEATURES = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "sve",
)
NATIVE_BF16 = ("avx512_bf16", "amx_bf16")


def _cpuinfo() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:  # not Linux, or /proc hidden
        return None


def cpu_model() -> str:
    for line in (_cpuinfo() or "").splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The SPEED_FEATURES this CPU reports (Linux /proc/cpuinfo "flags" or Arm "Features"); [] elsewhere."""
    for line in (_cpuinfo() or "").splitlines():
        if line.lower().startswith(("flags", "features")):
            flags = set(line.split(":", 1)[1].split())
            return [feature for feature in SPEED_FEATURES if feature in flags]
    return []


def cpu_has_native_bf16() -> bool:
    return any(feature in NATIVE_BF16 for feature in cpu_features())
