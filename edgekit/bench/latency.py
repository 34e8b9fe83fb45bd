"""Latency: warm up, then time each call; report percentiles, not a single mean."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgekit.progress import QUIET, Progress


def measure(
    run: Callable[[np.ndarray], object],
    batch: np.ndarray,
    warmup: int,
    iterations: int,
    progress: Progress = QUIET,
    desc: str = "timing",
) -> dict[str, float]:
    """Wall-clock per call (ms) of `run(batch)`; the first `warmup` calls are not counted."""
    for _ in range(warmup):
        run(batch)
    times = []
    for _ in progress.bar(range(iterations), desc=desc, total=iterations, unit="run"):
        start = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    samples = np.asarray(times)
    p50 = float(np.percentile(samples, 50))
    return {
        "batch": len(batch),
        "iterations": iterations,
        "p50_ms": p50,
        "p90_ms": float(np.percentile(samples, 90)),
        "p99_ms": float(np.percentile(samples, 99)),
        "mean_ms": float(samples.mean()),
        "min_ms": float(samples.min()),
        "images_per_s": len(batch) * 1000.0 / p50,
    }
