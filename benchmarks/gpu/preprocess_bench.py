"""GPU preprocessing speed: one 1920×1080 RGB frame → the 224×224 network input, edgekit's fused CUDA kernel
against torchvision's eval transform on the CPU (Resize(256) + CenterCrop(224) + ToTensor + Normalize on a
PIL image already in memory: decoding is excluded from both).

The kernel is timed with CUDA events around each launch on its own stream (the frame already on the GPU,
as it is when a camera or decoder writes device memory); the upload of the frame is timed separately,
from pinned and from pageable host memory, so the end-to-end cost from host memory can be added up. The
kernel's output is also checked against torchvision on the same frame. Target: ≥ 50× torchvision.

    .venv/bin/python benchmarks/gpu/preprocess_bench.py [--out benchmarks/results] [--iterations 300]

Writes preprocess_gpu.json and preprocess_gpu.md into --out. Exits with status 2 and no files where there
is no CUDA GPU.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from edgekit.backends.tensorrt import cuda
from edgekit.backends.tensorrt.kernels.launch import CudaPreprocessor, DeviceImage, gpu_unavailable_reason
from edgekit.data.preprocess import PreprocessSpec
from edgekit.measure.environment import environment

FRAME = (1920, 1080)


def full_hd_frame() -> np.ndarray:
    """A real photo (scikit-learn's china.jpg) scaled to 1920×1080: the kernel's cost does not depend on
    the content, but the parity check is more telling on a photo than on noise."""
    from sklearn.datasets import load_sample_images

    photo = Image.fromarray(load_sample_images().images[0])
    return np.asarray(photo.resize(FRAME, Image.Resampling.BICUBIC))


def stats(ms: list[float]) -> dict[str, float]:
    values = np.asarray(ms, dtype=np.float64)
    return {
        "median_ms": float(np.median(values)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
        "n": int(values.size),
    }


def torchvision_pipeline(spec: PreprocessSpec) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.Resize(spec.resize),
            transforms.CenterCrop(spec.crop),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )


def time_torchvision(
    frame: np.ndarray, spec: PreprocessSpec, iterations: int, warmup: int, threads: int
) -> dict[str, float]:
    """torchvision's transform with `threads` torch threads (PIL's resize is single-threaded either way)."""
    pipeline = torchvision_pipeline(spec)
    image = Image.fromarray(frame)
    image.load()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = []
    try:
        for i in range(warmup + iterations):
            start = time.perf_counter()
            pipeline(image)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(previous)
    return {**stats(times), "torch_threads": threads}


def _event_ms(drv: Any, start: Any, stop: Any) -> float:
    cuda.check(drv.cuEventSynchronize(stop), "cuEventSynchronize")
    return float(cuda.check(drv.cuEventElapsedTime(start, stop), "cuEventElapsedTime")[0])


def time_kernel(pre: CudaPreprocessor, frame: np.ndarray, iterations: int, warmup: int) -> dict[str, Any]:
    """Kernel time per dtype (CUDA events), host wall time of one call + sync, and upload times."""
    drv = cuda.driver()

    height, width = frame.shape[:2]
    out_bytes = 3 * pre.spec.crop**2 * 4
    result: dict[str, Any] = {}
    with pre.current():
        (stream,) = cuda.check(drv.cuStreamCreate(0), "cuStreamCreate")
        start, stop = (cuda.check(drv.cuEventCreate(0), "cuEventCreate")[0] for _ in range(2))
        (src,) = cuda.check(drv.cuMemAlloc(frame.nbytes), "cuMemAlloc")
        (out,) = cuda.check(drv.cuMemAlloc(out_bytes), "cuMemAlloc")
        (pinned,) = cuda.check(drv.cuMemHostAlloc(frame.nbytes, 0), "cuMemHostAlloc")
        try:
            ctypes.memmove(pinned, frame.ctypes.data, frame.nbytes)
            images = [DeviceImage(int(src), width, height, width * 3, "RGB")]
            pinned_ms, pageable_ms = [], []
            for i in range(warmup + iterations):
                cuda.check(drv.cuEventRecord(start, stream), "cuEventRecord")
                cuda.check(drv.cuMemcpyHtoDAsync(src, pinned, frame.nbytes, stream), "cuMemcpyHtoDAsync")
                cuda.check(drv.cuEventRecord(stop, stream), "cuEventRecord")
                elapsed = _event_ms(drv, start, stop)
                began = time.perf_counter()  # pageable: a synchronous copy through a staging buffer
                cuda.check(drv.cuMemcpyHtoD(src, frame.ctypes.data, frame.nbytes), "cuMemcpyHtoD")
                if i >= warmup:
                    pinned_ms.append(elapsed)
                    pageable_ms.append((time.perf_counter() - began) * 1e3)
            result["upload_pinned"], result["upload_pageable"] = stats(pinned_ms), stats(pageable_ms)
            for dtype in ("float32", "float16"):
                times, wall = [], []
                for i in range(warmup + iterations):
                    began = time.perf_counter()
                    cuda.check(drv.cuEventRecord(start, stream), "cuEventRecord")
                    pre(images, int(out), stream, dtype)
                    cuda.check(drv.cuEventRecord(stop, stream), "cuEventRecord")
                    elapsed = _event_ms(drv, start, stop)
                    if i >= warmup:
                        times.append(elapsed)
                        wall.append((time.perf_counter() - began) * 1e3)
                result[f"kernel_{dtype}"] = stats(times)
                result[f"call_and_sync_wall_{dtype}"] = stats(wall)
        finally:
            drv.cuMemFreeHost(pinned)
            drv.cuMemFree(src)
            drv.cuMemFree(out)
            drv.cuEventDestroy(start)
            drv.cuEventDestroy(stop)
            drv.cuStreamDestroy(stream)
    return result


def parity(pre: CudaPreprocessor, frame: np.ndarray) -> dict[str, float]:
    """Kernel vs torchvision on the frame: max |difference|, also in uint8 steps (1 / (255 std))."""
    spec = pre.spec
    ours = pre.preprocess_arrays([frame])[0]
    error = np.abs(ours - torchvision_pipeline(spec)(Image.fromarray(frame)).numpy())
    steps = error * 255.0 * np.asarray(spec.std)[:, None, None]
    return {"max_abs": float(error.max()), "max_uint8_steps": float(steps.max())}


def run(iterations: int = 300, warmup: int = 30, cpu_iterations: int = 50) -> dict[str, Any]:
    drv = cuda.driver()

    spec = PreprocessSpec()
    frame = full_hd_frame()
    with CudaPreprocessor(spec) as pre:
        kernel = time_kernel(pre, frame, iterations, warmup)
        check = parity(pre, frame)
        (driver_version,) = cuda.check(drv.cuDriverGetVersion(), "cuDriverGetVersion")
        gpu = {"name": pre.device_name, "sm": pre.sm, "driver": driver_version, "kernel": pre.kernel_origin}
    # ToTensor/Normalize on a 224×224 image are slower with a torch thread pool than without one (and
    # much slower on a busy machine), so the baseline is the faster of 1 thread and all threads.
    cpu_runs = [
        time_torchvision(frame, spec, cpu_iterations, max(3, warmup // 10), threads)
        for threads in sorted({1, torch.get_num_threads()})
    ]
    cpu = min(cpu_runs, key=lambda r: r["median_ms"])
    env = environment(threads=int(cpu["torch_threads"]))
    env["libraries"]["cuda-bindings"] = importlib.metadata.version("cuda-bindings")
    speedup = cpu["median_ms"] / kernel["kernel_float32"]["median_ms"]
    with_upload = cpu["median_ms"] / (kernel["kernel_float32"]["median_ms"] + kernel["upload_pinned"]["median_ms"])
    return {
        "what": f"{FRAME[0]}x{FRAME[1]} RGB uint8 -> resize 256 (antialiased bilinear) -> crop 224 -> NCHW",
        "gpu": gpu,
        "environment": env,
        "torchvision_cpu": cpu,
        "torchvision_cpu_by_threads": cpu_runs,
        "cuda": kernel,
        "parity_vs_torchvision": check,
        "speedup_kernel_vs_torchvision": speedup,
        "speedup_upload_pinned_plus_kernel_vs_torchvision": with_upload,
        "target_speedup": 50.0,
    }


def markdown(result: dict[str, Any]) -> str:
    env, gpu, cuda = result["environment"], result["gpu"], result["cuda"]
    rows = [
        ("torchvision on the CPU (PIL image in memory; faster thread setting)", result["torchvision_cpu"]),
        ("edgekit kernel, float32 output (CUDA events)", cuda["kernel_float32"]),
        ("edgekit kernel, float16 output (CUDA events)", cuda["kernel_float16"]),
        ("one call + stream sync, float32 (host wall time)", cuda["call_and_sync_wall_float32"]),
        ("frame upload from pinned memory (6.2 MB)", cuda["upload_pinned"]),
        ("frame upload from pageable memory (synchronous, host wall time)", cuda["upload_pageable"]),
    ]
    lines = [
        "# GPU preprocessing: 1920×1080 frame → 224×224 input",
        "",
        f"{env['date']}, {gpu['name']} (sm_{gpu['sm']}, driver {gpu['driver']}, kernel: {gpu['kernel']}); "
        f"CPU {env['cpu']}, {env['threads']} torch threads; "
        + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()),
        "",
        "| what | median ms | p90 ms | p99 ms |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {s['median_ms']:.4f} | {s['p90_ms']:.4f} | {s['p99_ms']:.4f} |" for name, s in rows),
        "",
        f"Kernel vs torchvision (medians): **{result['speedup_kernel_vs_torchvision']:.0f}×** "
        f"(target ≥ {result['target_speedup']:.0f}×); with the pinned upload added: "
        f"{result['speedup_upload_pinned_plus_kernel_vs_torchvision']:.0f}×.",
        f"Parity with torchvision on the frame: max |difference| {result['parity_vs_torchvision']['max_abs']:.2e} "
        f"({result['parity_vs_torchvision']['max_uint8_steps']:.2e} uint8 steps; the resize is bit-exact).",
        "",
        "Reproduce: `.venv/bin/python benchmarks/gpu/preprocess_bench.py`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--cpu-iterations", type=int, default=50)
    args = parser.parse_args()
    reason = gpu_unavailable_reason()
    if reason is not None:
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(2)
    result = run(args.iterations, args.warmup, args.cpu_iterations)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "preprocess_gpu.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "preprocess_gpu.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
