"""What `edgekit doctor` says about TensorRT on this machine: the Jetson release, TensorRT and where it is
imported from, the CUDA driver and binding, the GPU, DLA cores, power mode and clocks, and whether
`edgekit build` can run here. Works (saying "no GPU") on a machine without any of it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
from pathlib import Path

from edgekit.backends.base import Finding

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
# L4T major release → JetPack generation (NVIDIA's JetPack archive), and what each can run.
JETPACKS = {
    32: ("4.6", "Python 3.6: edgekit itself does not run; build with trtexec (`edgekit build --print-trtexec`)"),
    35: ("5", "Python 3.8: the device install runs (predict, bench, inspect, doctor, build)"),
    36: ("6", "Python 3.10: the device install runs"),
    38: ("7", "Python 3.12: the device install runs"),
}
SYSTEM_SITE = "python3 -m venv --system-site-packages VENV (or pip install --user edgekit)"


def jetson_release(path: Path = TEGRA_RELEASE) -> tuple[str, str | None] | None:
    """('R35.4.1', '5') from /etc/nv_tegra_release, or None off a Jetson."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not found:
        return (text.strip()[:60], None)
    major = int(found.group(1))
    jetpack = JETPACKS.get(major)
    return (f"R{major}.{found.group(2)}", jetpack[0] if jetpack else None)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda_runtime() -> str:
    """The CUDA runtime version cuda-python's runtime module reports ('12.6'), or why not."""
    from edgekit.backends.tensorrt import cuda

    try:
        (version,) = cuda.check(cuda.runtime().cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
    except (cuda.CudaError, RuntimeError, OSError) as exc:  # no libcudart: cuda.pathfinder's RuntimeError
        return f"unknown ({type(exc).__name__})"
    return f"{version // 1000}.{version % 1000 // 10}"


def diagnose() -> list[Finding]:
    findings: list[Finding] = []
    release = jetson_release()
    on_jetson = release is not None
    if release is not None:
        l4t, jetpack = release
        what = JETPACKS.get(int(l4t[1:].split(".")[0]), ("?", ""))[1] if l4t.startswith("R") else ""
        findings.append(Finding("jetson", "ok", f"L4T {l4t} (JetPack {jetpack or 'unknown'}): {what}".rstrip(": ")))

    spec = importlib.util.find_spec("tensorrt")
    if spec is None:
        fix = (
            f"JetPack's TensorRT Python bindings live in the system Python only: sudo apt install "
            f"python3-libnvinfer, then {SYSTEM_SITE}"
            if on_jetson
            else "pip install tensorrt (desktop GPUs), or use a machine with an NVIDIA GPU"
        )
        findings.append(Finding("tensorrt", "missing", "TensorRT's Python module is not importable", fix, fact=True))
    else:
        from edgekit.backends.tensorrt.trt_builder import tensorrt_version

        where = str(Path(spec.origin).parent) if spec.origin else "?"
        source = " (the system Python's, JetPack)" if where.startswith("/usr/lib/python3") else ""
        findings.append(Finding("tensorrt", "ok", f"TensorRT {tensorrt_version()} from {where}{source}", fact=True))

    binding = _version("cuda-bindings") or _version("cuda-python")
    if binding is None:
        findings.append(
            Finding(
                "cuda binding",
                "missing",
                "cuda-python is not installed (edgekit's CUDA calls: engine I/O, preprocessing kernel)",
                "pip install cuda-python (CUDA 12/13 drivers); JetPack 5 (CUDA 11.4): build cuda-python 11.8 from "
                "its source on the device (see the README, On the device)",
            )
        )
    else:
        findings.append(Finding("cuda binding", "ok", f"cuda-python {binding}, CUDA runtime {_cuda_runtime()}"))

    from edgekit.backends.tensorrt.device import clocks_and_power, describe, probe

    device = probe() if binding is not None else None
    if binding is None:
        findings.append(
            Finding("gpu", "info", "no GPU probed: without a CUDA binding edgekit cannot look for one", fact=True)
        )
    elif device is None:
        findings.append(Finding("gpu", "info", "no GPU: no CUDA device is visible to this process", fact=True))
    else:
        findings.append(
            Finding(
                "gpu",
                "ok",
                f"{describe(device)}, {device.memory_mb} MiB, CUDA driver {device.driver_version}",
                fact=True,
            )
        )
        facts = clocks_and_power()
        power = facts.get("nvpmodel") or facts.get("pstate")
        if power:
            findings.append(
                Finding(
                    "power mode", "info", power, "sudo jetson_clocks pins the clocks" if on_jetson else None, fact=True
                )
            )
        cores = dla_cores()
        if cores:
            findings.append(Finding("dla", "ok", f"{cores} DLA core(s): --dla-core N builds for one"))
        clocks = {k: v for k, v in facts.items() if "freq" in k or k.startswith("clocks")}
        if clocks:
            findings.append(Finding("clocks", "info", ", ".join(f"{k}={v}" for k, v in sorted(clocks.items()))))
    if on_jetson and shutil.which("trtexec") is None and Path("/usr/src/tensorrt/bin/trtexec").is_file():
        findings.append(Finding("trtexec", "info", "/usr/src/tensorrt/bin/trtexec (not on PATH)"))
    elif shutil.which("trtexec"):
        findings.append(Finding("trtexec", "ok", str(shutil.which("trtexec"))))

    ready = spec is not None and binding is not None and device is not None
    why = [f.topic for f in findings if f.status == "missing"] or ["no GPU"]
    findings.append(
        Finding(
            "edgekit build",
            "ok" if ready else "info",
            "can run here" if ready else f"cannot run here ({', '.join(why)})",
        )
    )
    return findings


def dla_cores() -> int | None:
    """DLA cores TensorRT sees (Xavier/Orin), or None where TensorRT is not importable."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt as trt

        return int(trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores)
    except (RuntimeError, TypeError, AttributeError):
        return None
