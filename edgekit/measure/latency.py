"""The one latency protocol: warm up, then time each call; report percentiles, not a single mean.

Every latency edgekit decides on (compile's budget timings, precision auto, pruning to a latency,
bench, sweep) is measured by `measure` under `PROTOCOL` unless the user sets other counts (bench's
--warmup/--iterations), and decisions use its batch-1 p50 (`p50_ms`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgekit.core.progress import QUIET, Progress
from edgekit.data.preprocess import PreprocessSpec


@dataclasses.dataclass(frozen=True)
class LatencyProtocol:
    warmup: int = 5  # calls not counted: first-call allocation, lazy initialisation, cache warm-up
    iterations: int = 50  # timed calls; the statistic is their median (p50), with p90/p99 beside it
    batch: int = 1  # what decisions are made on: one image, the edge device's usual case


PROTOCOL = LatencyProtocol()


def p50_ms(
    run: Callable[[np.ndarray], object],
    crop: int,
    protocol: LatencyProtocol = PROTOCOL,
    spec: PreprocessSpec | None = None,
) -> float:
    """The statistic decisions use: batch-`protocol.batch` p50 of `run` on a `crop`×`crop` input (of the
    layout `spec` gives the model, float32 NCHW without one)."""
    return float(measure(run, blank_input(crop, spec, protocol), protocol)["p50_ms"])


def blank_input(crop: int, spec: PreprocessSpec | None = None, protocol: LatencyProtocol = PROTOCOL) -> np.ndarray:
    """The batch decisions are timed on: zeros (values do not change the work done), `protocol.batch`
    images in the layout `spec` gives the model, float32 NCHW `crop`×`crop` without one."""
    return spec.blank_batch(protocol.batch) if spec else np.zeros((protocol.batch, 3, crop, crop), np.float32)


def side_by_side_p50s(
    runs: Sequence[Callable[[np.ndarray], object]],
    batches: Sequence[np.ndarray],
    protocol: LatencyProtocol = PROTOCOL,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """`p50_ms` of each of `runs` on its batch, timed in turns: one call of each per round, each round
    starting one further along. Builds timed one after another, minutes apart, carry the machine's drift
    (another process, clock or thermal changes) into their difference; timed in turns, drift falls on all
    alike."""
    for run, batch in zip(runs, batches):
        for _ in range(protocol.warmup):
            run(batch)
    times: list[list[float]] = [[] for _ in runs]
    for round_ in range(protocol.iterations):
        for offset in range(len(runs)):
            index = (round_ + offset) % len(runs)
            start = clock()
            runs[index](batches[index])
            times[index].append((clock() - start) * 1000.0)
    return [float(np.percentile(samples, 50)) for samples in times]


def measure(
    run: Callable[[np.ndarray], object],
    batch: np.ndarray,
    protocol: LatencyProtocol = PROTOCOL,
    progress: Progress = QUIET,
    desc: str = "timing",
    device_time: Callable[[], float | None] | None = None,
) -> dict[str, Any]:
    """Wall-clock per call (ms) of `run(batch)`; the first `protocol.warmup` calls are not counted.

    With `device_time` (a GPU backend's CUDA-event time of the call just made), the accelerator's
    own compute time is reported beside the end-to-end time, which also holds copies and Python.
    """
    warmup, iterations = protocol.warmup, protocol.iterations
    for _ in range(warmup):
        run(batch)
    times, device = [], []
    for _ in progress.bar(range(iterations), desc=desc, total=iterations, unit="run"):
        start = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - start) * 1000.0)
        measured = device_time() if device_time is not None else None
        if measured is not None:
            device.append(measured)
    samples = np.asarray(times)
    p50 = float(np.percentile(samples, 50))
    extra: dict[str, Any] = {}
    if device:
        extra["device_compute_ms"] = {
            "p50": float(np.percentile(device, 50)),
            "p99": float(np.percentile(device, 99)),
            "what": "GPU time of the network alone (CUDA events), without copies or host overhead",
        }
    return {
        "batch": len(batch),
        "iterations": iterations,
        "p50_ms": p50,
        "p90_ms": float(np.percentile(samples, 90)),
        "p99_ms": float(np.percentile(samples, 99)),
        "mean_ms": float(samples.mean()),
        "min_ms": float(samples.min()),
        "images_per_s": len(batch) * 1000.0 / p50,
        "samples_ms": [round(t, 4) for t in times],  # for distributions in reports
        **extra,
    }
