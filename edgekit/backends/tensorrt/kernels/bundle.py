"""The preprocessing kernel inside a GPU bundle: its source, and cubins where this machine's nvcc can make them.

The source always ships, so a device whose SM the local CUDA cannot target (CUDA 13 dropped the
Nano's sm_53 and Xavier's sm_72), or whose driver is older than the cubin's toolkit, compiles it with
NVRTC when the bundle is loaded.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgekit.backends.tensorrt.kernels.toolchain import KERNEL_SOURCE, build_aot, sm_name
from edgekit.core.progress import Progress
from edgekit.targets import Target

KERNEL_DIR = "kernels"
_CUBIN = re.compile(KERNEL_DIR + r"/preprocess-sm_(\d{2,3})\.cubin")


def cubin_name(sm: int) -> str:
    return f"{KERNEL_DIR}/preprocess-{sm_name(sm)}.cubin"


def add_kernels(stage: Path, target: Target, progress: Progress) -> dict[str, Any]:
    """Write kernels/ into the staged bundle; returns the manifest's `kernels` record."""
    if target.gpu is None:
        raise ValueError("kernels are for GPU targets")
    sm = target.gpu.sm
    directory = stage / KERNEL_DIR
    directory.mkdir(exist_ok=True)
    shutil.copyfile(KERNEL_SOURCE, directory / KERNEL_SOURCE.name)
    record: dict[str, Any] = {"source": f"{KERNEL_DIR}/{KERNEL_SOURCE.name}", "sm": sm, "cubin": None}
    aot = build_aot([sm])
    if sm in aot.cubins:
        (stage / cubin_name(sm)).write_bytes(aot.cubins[sm])
        record.update(cubin=cubin_name(sm), compiler=aot.compiler)
        record["summary"] = f"{sm_name(sm)} cubin ({aot.compiler.split(' (')[0]}), NVRTC fallback from the source"
    else:
        record["why_no_cubin"] = aot.skipped[sm]
        record["summary"] = f"source only: compiled with NVRTC on the device ({sm_name(sm)})"
        progress.note(f"note: no {sm_name(sm)} cubin made here: {aot.skipped[sm]}")
    record["toolkit_range"] = str(target.gpu.cuda)
    return record


def cubin_names(files: Iterable[str]) -> tuple[str, ...]:
    """The preprocessing cubins among a bundle's listed files (only listed files are ever loaded)."""
    return tuple(sorted(name for name in files if _CUBIN.fullmatch(name)))


def cubins_by_sm(contents: Mapping[str, bytes]) -> dict[int, bytes]:
    """The verified cubins, by SM (for CudaPreprocessor; NVRTC covers the rest)."""
    found = (_CUBIN.fullmatch(name) for name in contents)
    return {int(match.group(1)): contents[match.group(0)] for match in found if match}
