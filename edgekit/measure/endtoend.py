"""What a user waits for: an encoded image file to a label, stage by stage, batch 1.

Stages: read (file bytes), decode (JPEG/PNG → RGB pixels), resize/crop, normalise, network, postprocess
(probabilities and top-5). Run on the user's own files, so the resize cost is that of their image sizes,
on both decode paths: "exact" (torchvision's transform bit for bit) and "fast" (JPEG DCT scaling, see
`PreprocessSpec.decode`), with the top-1 agreement of the two on those files.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data.images import decode_image, read_file
from edgekit.data.preprocess import PreprocessSpec, model_input, resize_and_crop
from edgekit.measure.stats import wilson

STAGES = ("read", "decode", "resize_crop", "normalise", "network", "postprocess")


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


def end_to_end(
    files: Sequence[Path],
    spec: PreprocessSpec,
    network: Callable[[np.ndarray], np.ndarray],
    postprocess: Callable[[np.ndarray], np.ndarray],
    warmup: int = 3,
) -> dict[str, Any]:
    """p50 ms of each stage and p50/p90 of the whole trip, per decode path, on `files` (unreadable ones are
    skipped); the fast path's top-1 agreement with the exact one; the files' median size."""
    results: dict[str, Any] = {}
    top1: dict[str, list[int]] = {}
    sizes: list[tuple[int, int]] = []
    for decode in ("exact", "fast"):
        path_spec = dataclasses.replace(spec, decode=decode)
        timings: dict[str, list[float]] = {stage: [] for stage in STAGES}
        totals: list[float] = []
        top1[decode] = []
        usable = 0
        for index, file in enumerate([*files[:warmup], *files]):
            marks = [time.perf_counter()]
            try:
                data = read_file(file)
                marks.append(time.perf_counter())
                image = decode_image(data, scale_to=path_spec.scale_to)
            except ValueError:
                continue
            marks.append(time.perf_counter())
            if decode == "exact" and index >= warmup:
                sizes.append(image.size)
            cropped = resize_and_crop(image, path_spec)
            marks.append(time.perf_counter())
            batch = model_input(cropped, path_spec)[None]  # uint8 pixels for a model that normalises itself
            marks.append(time.perf_counter())
            outputs = network(batch)
            marks.append(time.perf_counter())
            ranked = postprocess(outputs)
            marks.append(time.perf_counter())
            if index < warmup:
                continue
            usable += 1
            top1[decode].append(int(np.asarray(ranked).reshape(-1)[0]))
            for stage, start, end in zip(STAGES, marks, marks[1:]):
                timings[stage].append((end - start) * 1000.0)
            totals.append((marks[-1] - marks[0]) * 1000.0)
        if not usable:
            return {}
        row = {f"{stage}_ms": _percentile(values, 50) for stage, values in timings.items()}
        row.update(
            preprocess_ms=sum(row[f"{s}_ms"] for s in ("read", "decode", "resize_crop", "normalise")),
            end_to_end_p50_ms=_percentile(totals, 50),
            end_to_end_p90_ms=_percentile(totals, 90),
            images=usable,
            decode=decode,
        )
        row["end_to_end_vs_network"] = row["end_to_end_p50_ms"] / row["network_ms"] if row["network_ms"] else None
        results[decode] = row
    agreed = int(np.sum(np.asarray(top1["exact"]) == np.asarray(top1["fast"])))
    n = len(top1["exact"])
    width, height = (int(np.median([s[i] for s in sizes])) for i in (0, 1))
    results["fast_vs_exact"] = {
        "images": n,
        "top1_agreement": agreed / n,
        "top1_agreement_ci95": list(wilson(agreed, n)),
    }
    results["image_size"] = f"{width}×{height} (median)"
    return results
