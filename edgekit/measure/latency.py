"""The one timing loop: every latency edgekit reports or decides on is measured by `time_in_turns`.

Protocol (`TimingProtocol`): each callable is warmed up `warmup` times (first-call allocation, lazy
initialisation, caches), then timed until it has `iterations` samples, or for as long as `duration_s`
seconds when that is set (trtexec's `--duration`), never fewer than `iterations`. Several callables are
timed *in turns*, in rounds, each round starting one further along, so that the machine's drift (another
process, clock or thermal changes) falls on all of them alike and their ratio holds even on a busy
machine. A turn is a block of `block` calls whose first `settle` are not counted: a runtime's worker
threads keep spinning for a while after its call (ONNX Runtime's intra-op threads, OpenMP's), and a call
of another runtime right then pays for them — measured here, OpenVINO at 4.3 ms right after ONNX Runtime
against 2.5 ms alone, which ranked the two backwards; blocks of 10 with 3 settling calls give each its
figure alone (benchmarks/results/compile_speed.md). One callable alone needs no settling. Decisions use
the batch-1 p50 (`p50_ms`).

Tail percentiles only where the sample supports them: a percentile q is reported when at least
`TAIL_SAMPLES` samples lie at or beyond it, n·(1 − q) ≥ 5 — p90 from 50 samples, p99 from 500 —
otherwise it is None and the sample count n says why (`core.percentiles`).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edgekit.core.percentiles import percentile_or_none
from edgekit.core.progress import QUIET, Progress
from edgekit.data.preprocess import PreprocessSpec

After = Callable[[], "Mapping[str, float] | None"]  # per-call figures read right after a timed call


@dataclasses.dataclass(frozen=True)
class TimingProtocol:
    warmup: int = 5  # calls not counted, per timed callable
    iterations: int = 50  # samples per callable (the minimum when `duration_s` is set)
    duration_s: float | None = None  # keep timing rounds until this many seconds have passed
    block: int = 10  # calls per turn when several callables are timed in turns
    settle: int = 3  # calls at the start of each turn not counted (another runtime's threads still spinning)
    batch: int = 1  # what decisions are made on: one image, the edge device's usual case


PROTOCOL = TimingProtocol()


@dataclasses.dataclass(frozen=True)
class Timing:
    """One callable's timed calls: wall-clock ms per call, with the figures its `after` hook reported."""

    batch: int  # images per call
    samples_ms: tuple[float, ...]
    extra: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 50))

    @property
    def p90_ms(self) -> float | None:
        return percentile_or_none(self.samples_ms, 90)

    @property
    def p99_ms(self) -> float | None:
        return percentile_or_none(self.samples_ms, 99)

    @property
    def images_per_s(self) -> float:
        return self.batch * 1000.0 / self.p50_ms

    def extra_p50(self, name: str) -> float | None:
        values = self.extra.get(name)
        return float(np.median(values)) if values else None

    def to_dict(self) -> dict[str, Any]:
        samples = np.asarray(self.samples_ms)
        record: dict[str, Any] = {
            "batch": self.batch,
            "iterations": self.n,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": float(samples.mean()),
            "min_ms": float(samples.min()),
            "images_per_s": self.images_per_s,
            "samples_ms": [round(t, 4) for t in self.samples_ms],  # for distributions in reports
        }
        device = self.extra.get("device_compute_ms")
        if device:
            record["device_compute_ms"] = {
                "p50": float(np.median(device)),
                "p99": percentile_or_none(device, 99),
                "n": len(device),
                "what": "GPU time of the network alone (CUDA events), without copies or host overhead",
            }
        return record


def time_in_turns(
    calls: Sequence[Callable[[], object]],
    protocol: TimingProtocol = PROTOCOL,
    batches: Sequence[int] | None = None,
    after: Sequence[After | None] | None = None,
    progress: Progress = QUIET,
    desc: str = "timing",
    clock: Callable[[], float] = time.perf_counter,
) -> list[Timing]:
    """Each of `calls` warmed up, then timed in turns under `protocol`; one `Timing` per call, in order.

    `batches`: images per call (for images/s; 1 each by default). `after[i]`, where given, is called right
    after each timed call of `calls[i]`, outside the clock, and its figures (a GPU's own compute time, a
    pipeline's stage splits) are kept beside the wall-clock samples."""
    if not calls:
        return []
    hooks = [*(after or ()), *[None] * len(calls)][: len(calls)]
    for call in calls:
        for _ in range(protocol.warmup):
            call()
    times: list[list[float]] = [[] for _ in calls]
    extras: list[dict[str, list[float]]] = [{} for _ in calls]
    settle, block = (0, 1) if len(calls) == 1 else (protocol.settle, max(protocol.block, protocol.settle + 1))
    per_round = block - settle
    needed = -(-protocol.iterations // per_round)  # rounds for `iterations` samples each
    deadline = None if protocol.duration_s is None else clock() + protocol.duration_s
    rounds = itertools.count() if deadline is not None else range(needed)
    bar = progress.bar(rounds, desc=desc, total=None if deadline is not None else needed, unit="round")
    for round_ in bar:
        if deadline is not None and round_ >= needed and clock() >= deadline:
            break
        for offset in range(len(calls)):
            index = (round_ + offset) % len(calls)
            for position in range(block):
                start = clock()
                calls[index]()
                elapsed = (clock() - start) * 1000.0
                if position < settle:
                    continue
                times[index].append(elapsed)
                hook = hooks[index]
                figures = hook() if hook is not None else None
                for name, value in (figures or {}).items():
                    if value is not None:
                        extras[index].setdefault(name, []).append(float(value))
    sizes = list(batches) if batches is not None else [1] * len(calls)
    keep = None if deadline is not None else protocol.iterations  # the last round may overshoot the count
    return [
        Timing(size, tuple(samples[:keep]), {k: tuple(v[:keep]) for k, v in extra.items()})
        for size, samples, extra in zip(sizes, times, extras)
    ]


def time_runs(
    runs: Sequence[Callable[[np.ndarray], object]],
    inputs: Sequence[np.ndarray],
    protocol: TimingProtocol = PROTOCOL,
    after: Sequence[After | None] | None = None,
    progress: Progress = QUIET,
    desc: str = "timing",
) -> list[Timing]:
    """`time_in_turns` of model runs, each on its own input batch (the batch's length is its image count)."""
    calls = [(lambda run=run, batch=batch: run(batch)) for run, batch in zip(runs, inputs)]
    return time_in_turns(calls, protocol, [len(batch) for batch in inputs], after, progress, desc)


def p50_ms(
    run: Callable[[np.ndarray], object],
    crop: int,
    protocol: TimingProtocol = PROTOCOL,
    spec: PreprocessSpec | None = None,
) -> float:
    """The statistic decisions use: batch-`protocol.batch` p50 of `run` on a `crop`×`crop` input (of the
    layout `spec` gives the model, float32 NCHW without one)."""
    return time_runs([run], [blank_input(crop, spec, protocol)], protocol)[0].p50_ms


def blank_input(crop: int, spec: PreprocessSpec | None = None, protocol: TimingProtocol = PROTOCOL) -> np.ndarray:
    """The batch decisions are timed on: zeros (values do not change the work done), `protocol.batch`
    images in the layout `spec` gives the model, float32 NCHW `crop`×`crop` without one."""
    return spec.blank_batch(protocol.batch) if spec else np.zeros((protocol.batch, 3, crop, crop), np.float32)
