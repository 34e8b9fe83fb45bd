"""What a user waits for: an encoded image file to a label, stage by stage, batch 1.

Stages: read (file bytes), decode (JPEG/PNG → RGB pixels), resize/crop, normalise, network, postprocess
(probabilities and top-5). Run on the user's own files, so the resize cost is that of their image sizes,
on both decode paths: "exact" (torchvision's transform bit for bit) and "fast" (JPEG DCT scaling, see
`PreprocessSpec.decode`), with the top-1 agreement of the two on those files.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data.images import decode_image, read_file
from edgekit.data.preprocess import PreprocessSpec, model_input, resize_and_crop
from edgekit.measure.latency import TimingProtocol, time_in_turns
from edgekit.measure.stats import top1_agreement

STAGES = ("read", "decode", "resize_crop", "normalise", "network", "postprocess")
PATHS = ("exact", "fast")
WARMUP = 3
MIN_TRIPS = 50


def end_to_end(
    files: Sequence[Path],
    spec: PreprocessSpec,
    network: Callable[[np.ndarray], np.ndarray],
    postprocess: Callable[[np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """p50 ms of each stage and p50/p90 of the whole trip, per decode path, on `files` (unreadable ones are
    skipped); the fast path's top-1 agreement with the exact one; the files' median size.

    Both paths go through the one timing loop, in turns: each call takes the next file through every stage,
    its stage splits read after the call; each file is timed at least once per path (`MIN_TRIPS` in all)."""
    sizes: list[tuple[int, int]] = []
    usable: list[Path] = []
    for file in files:
        try:
            sizes.append(decode_image(read_file(file)).size)
        except ValueError:
            continue
        usable.append(file)
    if not usable:
        return {}
    calls, hooks = [], []
    for decode in PATHS:
        trip = _Trip(usable, dataclasses.replace(spec, decode=decode), network, postprocess)
        calls.append(trip.next_file)
        hooks.append(trip.splits)
    # Every file once, and round again to 50 trips where there are fewer files, so that p90 is supported.
    # One call per turn: both paths run the same model (nothing to settle), and each path's trips must stay
    # in file order so that the two are compared file by file.
    protocol = TimingProtocol(warmup=WARMUP, iterations=max(len(usable), MIN_TRIPS), block=1, settle=0)
    timings = dict(zip(PATHS, time_in_turns(calls, protocol, after=hooks)))
    results: dict[str, Any] = {}
    for decode, timing in timings.items():
        row = {f"{stage}_ms": timing.extra_p50(stage) or 0.0 for stage in STAGES}
        row.update(
            preprocess_ms=sum(row[f"{s}_ms"] for s in ("read", "decode", "resize_crop", "normalise")),
            end_to_end_p50_ms=timing.p50_ms,
            end_to_end_p90_ms=timing.p90_ms,
            images=len(usable),
            trips=timing.n,
            decode=decode,
        )
        row["end_to_end_vs_network"] = row["end_to_end_p50_ms"] / row["network_ms"] if row["network_ms"] else None
        results[decode] = row
    once = len(usable)  # each file's first timed trip (both paths start at the same file)
    agreement = top1_agreement(timings["exact"].extra["top1"][:once], timings["fast"].extra["top1"][:once])
    width, height = (int(np.median([s[i] for s in sizes])) for i in (0, 1))
    results["fast_vs_exact"] = agreement.to_dict()
    results["image_size"] = f"{width}×{height} (median)"
    return results


class _Trip:
    """One decode path's calls for the timing loop: each call takes the next file through every stage."""

    def __init__(
        self,
        files: Sequence[Path],
        spec: PreprocessSpec,
        network: Callable[[np.ndarray], np.ndarray],
        postprocess: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.files, self.spec, self.network, self.postprocess = itertools.cycle(files), spec, network, postprocess
        self.last: dict[str, float] = {}

    def next_file(self) -> None:
        marks = [time.perf_counter()]
        data = read_file(next(self.files))
        marks.append(time.perf_counter())
        image = decode_image(data, scale_to=self.spec.scale_to)
        marks.append(time.perf_counter())
        cropped = resize_and_crop(image, self.spec)
        marks.append(time.perf_counter())
        batch = model_input(cropped, self.spec)[None]  # uint8 pixels for a model that normalises itself
        marks.append(time.perf_counter())
        outputs = self.network(batch)
        marks.append(time.perf_counter())
        ranked = self.postprocess(outputs)
        marks.append(time.perf_counter())
        self.last = {stage: (end - start) * 1000.0 for stage, start, end in zip(STAGES, marks, marks[1:])}
        self.last["top1"] = float(np.asarray(ranked).reshape(-1)[0])

    def splits(self) -> dict[str, float]:
        return self.last
