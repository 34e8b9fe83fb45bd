"""The CUDA device this process would run on, read with cuda-python's driver API (no TensorRT needed)."""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

from edgekit.backends.tensorrt import cuda
from edgekit.core.errors import EdgekitError
from edgekit.core.versions import sm_number


@dataclasses.dataclass(frozen=True)
class CudaDevice:
    name: str  # "Orin", "NVIDIA H200", "NVIDIA GeForce RTX 4070"
    compute_capability: str  # "8.7"
    driver_version: str  # "13.0" (what the driver supports, not the toolkit)
    memory_mb: int

    @property
    def sm(self) -> int:
        return sm_number(self.compute_capability)

    @property
    def slug(self) -> str:
        """File-name-safe device name: "nvidia-geforce-rtx-4070"."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "gpu"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.lru_cache(maxsize=None)  # not functools.cache (3.9+): the device side runs Python 3.8
def probe(ordinal: int = 0) -> CudaDevice | None:
    """Device `ordinal`, or None where there is no driver, no GPU, or no cuda-python."""
    try:
        driver = cuda.driver()
    except EdgekitError:  # no cuda-python
        return None
    try:
        cuda.value(driver.cuInit(0))
        if cuda.value(driver.cuDeviceGetCount()) <= ordinal:
            return None
        device = cuda.value(driver.cuDeviceGet(ordinal))
        attribute = driver.CUdevice_attribute
        major = cuda.value(driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device))
        minor = cuda.value(driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device))
        name = cuda.value(driver.cuDeviceGetName(256, device))
        total = cuda.value(driver.cuDeviceTotalMem(device))
        version = cuda.value(driver.cuDriverGetVersion())
    except (cuda.CudaError, RuntimeError, OSError):  # no driver library, or no usable device
        return None
    return CudaDevice(
        name=name.split(b"\0", 1)[0].decode(errors="replace").strip(),
        compute_capability=f"{major}.{minor}",
        driver_version=f"{version // 1000}.{version % 1000 // 10}",
        memory_mb=int(total) >> 20,
    )


def describe(device: CudaDevice | None) -> str:
    if device is None:
        return "no CUDA GPU"
    return f"{device.name} (sm_{device.sm})"


def clocks_and_power() -> dict[str, str]:
    """What the GPU ran at, where it can be read: numbers mean little without the power mode and clocks.

    Desktops: `nvidia-smi` (clocks, power draw and limit, P-state). Jetson: the `nvpmodel` power mode
    and the GPU's current/max devfreq frequency; `jetson_clocks` pins them. Missing tools are skipped.
    """
    import glob
    import shutil
    import subprocess

    facts: dict[str, str] = {}
    if shutil.which("nvidia-smi"):
        query = "name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,pstate,temperature.gpu"
        try:
            out = subprocess.run(
                ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.splitlines()  # fmt: skip
            if out:
                facts.update(zip(query.split(","), (v.strip() for v in out[0].split(","))))
        except (OSError, subprocess.SubprocessError):
            pass
    if shutil.which("nvpmodel"):
        try:
            mode = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10, check=False)
            facts["nvpmodel"] = " ".join(mode.stdout.split())
        except (OSError, subprocess.SubprocessError):
            pass
    devfreq = [*glob.glob("/sys/devices/platform/*gpu*/devfreq/*"), *glob.glob("/sys/devices/gpu.0/devfreq/*")]
    for folder in map(Path, devfreq):
        try:
            facts["jetson_gpu_cur_freq_hz"] = (folder / "cur_freq").read_text().strip()
            facts["jetson_gpu_max_freq_hz"] = (folder / "max_freq").read_text().strip()
        except OSError:
            continue
        break
    return facts
