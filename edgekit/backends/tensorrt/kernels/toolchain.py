"""Compiling preprocess.cu: ahead of time with nvcc, or with NVRTC (in-process) at load time.

A bundle ships cubins for the target SMs the local nvcc can build; a device whose SM is not among them
(an older or newer GPU than the toolkit knows, e.g. Jetson Xavier's sm_72 with CUDA 13) compiles the
same source with its own NVRTC when the kernel is loaded. Both paths compile the same file with no
headers, so the two produce the same arithmetic.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from edgekit.backends.tensorrt import cuda
from edgekit.core.errors import EdgekitError

KERNEL_SOURCE = Path(__file__).with_name("preprocess.cu")
KERNEL_NAMES = {"float32": "edgekit_preprocess_f32", "float16": "edgekit_preprocess_f16"}
# No -std: the source is plain C++11 so that older NVRTCs on devices (CUDA 10.2 / 11.x) take it too.
_NVCC_FLAGS = ("-O3", "-lineinfo")
_NVRTC_FLAGS = ("--generate-line-info",)


def kernel_source() -> str:
    return KERNEL_SOURCE.read_text(encoding="utf-8")


def sm_name(sm: int) -> str:
    return f"sm_{sm}"


def find_nvcc() -> str | None:
    """nvcc on PATH, else under $CUDA_HOME / $CUDA_PATH, else /usr/local/cuda."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise EdgekitError(f"{' '.join(command)} failed (exit {result.returncode}): {detail}")
    return result.stdout


def nvcc_version(nvcc: str) -> str:
    match = re.search(r"release (\d+\.\d+)", _run([nvcc, "--version"]))
    return match.group(1) if match else "unknown"


def nvcc_targets(nvcc: str) -> list[int]:
    """The SMs this nvcc can emit machine code for (`nvcc --list-gpu-code`: sm_75, sm_87, ...)."""
    return sorted({int(m) for m in re.findall(r"\bsm_(\d+)\b", _run([nvcc, "--list-gpu-code"]))})


def nvcc_cubin(sm: int, nvcc: str | None = None) -> bytes:
    """The kernel compiled by nvcc to a cubin for one SM."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise EdgekitError("nvcc not found: install the CUDA toolkit or put nvcc on PATH")
    with tempfile.TemporaryDirectory(prefix="edgekit-nvcc-") as work:
        out = Path(work) / f"preprocess_{sm_name(sm)}.cubin"
        _run([nvcc, "-cubin", f"-arch={sm_name(sm)}", *_NVCC_FLAGS, "-o", str(out), str(KERNEL_SOURCE)])
        return out.read_bytes()


def nvcc_fatbin(sms: Iterable[int], nvcc: str | None = None, ptx: bool = True) -> bytes:
    """One fatbin with a cubin per SM, plus PTX of the newest one (`ptx`) so that a newer GPU can JIT it."""
    sms = sorted(set(sms))
    nvcc = nvcc or find_nvcc()
    if nvcc is None or not sms:
        raise EdgekitError("nvcc_fatbin needs nvcc and at least one SM")
    codes = [f"-gencode=arch=compute_{sm},code=sm_{sm}" for sm in sms]
    if ptx:
        codes.append(f"-gencode=arch=compute_{sms[-1]},code=compute_{sms[-1]}")
    with tempfile.TemporaryDirectory(prefix="edgekit-nvcc-") as work:
        out = Path(work) / "preprocess.fatbin"
        _run([nvcc, "-fatbin", *codes, *_NVCC_FLAGS, "-o", str(out), str(KERNEL_SOURCE)])
        return out.read_bytes()


@dataclasses.dataclass
class AotBuild:
    """What `build_aot` made: cubins by SM, and for every SM it could not build, why."""

    cubins: dict[int, bytes]
    skipped: dict[int, str]
    compiler: str  # e.g. "nvcc 13.0 (/usr/local/bin/nvcc)", or "" when there was none

    @property
    def built(self) -> list[int]:
        return sorted(self.cubins)


def build_aot(sms: Iterable[int], nvcc: str | None = None) -> AotBuild:
    """A cubin per requested SM that the local nvcc can target; the others are listed with the reason.

    Never raises for a missing or too old/new toolkit: those SMs fall back to NVRTC at load time, and the
    caller decides whether that is acceptable (and records `skipped` in the bundle's manifest).
    """
    wanted = sorted(set(sms))
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        reason = "nvcc not found on this machine; the kernel will be compiled with NVRTC when it is loaded"
        return AotBuild({}, dict.fromkeys(wanted, reason), "")
    version = nvcc_version(nvcc)
    targets = nvcc_targets(nvcc)
    cubins: dict[int, bytes] = {}
    skipped: dict[int, str] = {}
    for sm in wanted:
        if sm not in targets:
            skipped[sm] = (
                f"nvcc {version} cannot target {sm_name(sm)} (it targets {', '.join(map(sm_name, targets))}); "
                "the kernel will be compiled with NVRTC on the device when it is loaded"
            )
            continue
        try:
            cubins[sm] = nvcc_cubin(sm, nvcc)
        except EdgekitError as exc:
            skipped[sm] = str(exc)
    return AotBuild(cubins, skipped, f"nvcc {version} ({nvcc})")


# ---- NVRTC ---------------------------------------------------------------------------------------


def nvrtc_version() -> str | None:
    """'13.0' when NVRTC loads, None when it does not (cuda-bindings or libnvrtc missing)."""
    try:
        nvrtc = cuda.nvrtc()
        major, minor = cuda.check(nvrtc.nvrtcVersion(), "NVRTC version")
    except (RuntimeError, OSError):  # loaded lazily: a missing libnvrtc is cuda.pathfinder's RuntimeError here
        return None
    return f"{major}.{minor}"


def nvrtc_targets() -> list[int]:
    nvrtc = cuda.nvrtc()
    (archs,) = cuda.check(nvrtc.nvrtcGetSupportedArchs(), "NVRTC nvrtcGetSupportedArchs")
    return sorted(int(a) for a in archs)


def nvrtc_compile(sm: int, ptx: bool = False) -> bytes:
    """The kernel compiled in-process by NVRTC: a cubin for `sm`, or PTX for compute_`sm` (`ptx`), which
    the driver JIT-compiles for any GPU at least that new. PTX comes back NUL-terminated, as
    cuModuleLoadData expects."""
    nvrtc = cuda.nvrtc()
    arch = f"compute_{sm}" if ptx else sm_name(sm)
    (program,) = cuda.check(nvrtc.nvrtcCreateProgram(kernel_source().encode(), b"preprocess.cu", 0, [], []), "create")
    try:
        options = [f"--gpu-architecture={arch}".encode(), *(f.encode() for f in _NVRTC_FLAGS)]
        (result,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            (size,) = cuda.check(nvrtc.nvrtcGetProgramLogSize(program), "NVRTC log size")
            log = b" " * size
            cuda.check(nvrtc.nvrtcGetProgramLog(program, log), "NVRTC log")
            raise cuda.CudaError(f"NVRTC could not compile preprocess.cu for {arch}: {log.decode(errors='replace')}")
        getter, sizer = (
            (nvrtc.nvrtcGetPTX, nvrtc.nvrtcGetPTXSize) if ptx else (nvrtc.nvrtcGetCUBIN, nvrtc.nvrtcGetCUBINSize)
        )
        (size,) = cuda.check(sizer(program), "NVRTC output size")
        image = b" " * size
        cuda.check(getter(program, image), "NVRTC output")
        return image
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def compile_for_device(sm: int) -> tuple[bytes, str]:
    """Load-time compilation for a GPU of compute capability `sm` (e.g. 87): (image, how it was made).

    NVRTC first (it is in-process and ships with cuda-bindings' wheels; a device rarely has nvcc), as a
    cubin when it knows the SM, else as PTX for the newest SM it knows below it (the driver JITs that);
    nvcc when NVRTC is missing. EdgekitError when neither can produce code for this GPU.
    """
    reasons = []
    version = nvrtc_version()
    if version is None:
        reasons.append("NVRTC is not available (pip install cuda-bindings nvidia-cuda-nvrtc)")
    else:
        targets = nvrtc_targets()
        if sm in targets:
            return nvrtc_compile(sm), f"NVRTC {version} cubin {sm_name(sm)}"
        older = [t for t in targets if t <= sm]
        if older:
            return nvrtc_compile(older[-1], ptx=True), f"NVRTC {version} PTX compute_{older[-1]} (driver JIT)"
        reasons.append(f"NVRTC {version} cannot target {sm_name(sm)} (oldest it knows: {sm_name(targets[0])})")
    nvcc = find_nvcc()
    if nvcc is None:
        reasons.append("nvcc not found")
    elif sm in nvcc_targets(nvcc):
        return nvcc_cubin(sm, nvcc), f"nvcc {nvcc_version(nvcc)} cubin {sm_name(sm)}"
    else:
        reasons.append(f"nvcc {nvcc_version(nvcc)} cannot target {sm_name(sm)}")
    raise EdgekitError(f"cannot compile the preprocessing kernel for {sm_name(sm)}: {'; '.join(reasons)}")
