"""The report's plots, drawn with matplotlib and inlined as SVG (no files, no network fetches)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from edgekit.report.analysis import Reference, Row
from edgekit.report.variants import Variant

STAGE_COLOURS = {
    "read": "#9ecae9",
    "decode": "#4c78a8",
    "resize_crop": "#72b7b2",
    "normalise": "#b279a2",
    "preprocess": "#4c78a8",  # results written before the stages were split
    "network": "#f58518",
    "postprocess": "#54a24b",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "svg.fonttype": "none", "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    _pyplot().close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog so it can sit inside HTML


def pareto_plot(rows: Sequence[Row], front: Sequence[int], reference: Reference, budget: float) -> str:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.2))
    markers = "osD^vP*Xh<>"
    for index, row in enumerate(r for r in rows if r.top1 is not None):  # a legend: close points stay readable
        axes.scatter(row.p50_ms, row.top1 * 100, marker=markers[index % len(markers)], s=45, zorder=3,
                     label=row.name)  # fmt: skip
    if front:
        axes.plot(
            [rows[i].p50_ms for i in front],
            [(rows[i].top1 or 0.0) * 100 for i in front],
            color="#e45756",
            drawstyle="steps-post",
            label="Pareto front",
        )
    if reference.top1 is not None:
        if reference.p50_ms is not None:
            axes.scatter([reference.p50_ms], [reference.top1 * 100], marker="*", s=150, color="black", zorder=4)
            axes.annotate("FP32 reference", (reference.p50_ms, reference.top1 * 100), xytext=(-8, -14),
                          textcoords="offset points", ha="right")  # fmt: skip
        axes.axhline(reference.top1 * 100 - budget, color="grey", linestyle="--", label=f"budget: −{budget:g} pts")
    axes.set_xlabel("latency, batch 1, p50 (ms) — lower is better")
    axes.set_ylabel("top-1 (%) — higher is better")
    axes.set_title("Latency vs accuracy")
    if axes.get_legend_handles_labels()[0]:  # nothing to list when no variant has accuracy
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return _svg(figure)


def latency_plot(variants: Sequence[Variant]) -> str:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 0.5 + 0.45 * len(variants)))
    samples = [list((row.samples_ms if (row := v.latency()) else ()) or [v.p50_ms]) for v in variants]
    axes.boxplot(samples, vert=False, whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
    axes.set_yticks(range(1, len(variants) + 1), [v.name for v in variants])
    axes.set_xlabel("latency per call, batch 1 (ms); box = p25–p75, whiskers = p1–p99")
    axes.set_title("Latency distribution")
    return _svg(figure)


def throughput_plot(variants: Sequence[Variant]) -> str:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.4))
    batches = sorted({row.batch for v in variants for row in v.result.latency["bundle"]})
    width = 0.8 / max(1, len(variants))
    for index, variant in enumerate(variants):
        values = [row.images_per_s if (row := variant.latency(batch=b)) else 0.0 for b in batches]
        axes.bar([i + index * width for i in range(len(batches))], values, width, label=variant.name)
    axes.set_xticks([i + width * (len(variants) - 1) / 2 for i in range(len(batches))], [f"batch {b}" for b in batches])
    axes.set_ylabel("images/s (p50)")
    axes.set_title("Throughput by batch size")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return _svg(figure)


def stage_plot(variants: Sequence[Variant]) -> str:
    plt = _pyplot()
    with_stages = [v for v in variants if v.result.stages]
    figure, axes = plt.subplots(figsize=(7, 0.5 + 0.45 * len(with_stages)))
    for row, variant in enumerate(with_stages):
        left = 0.0
        stages = variant.result.stages
        assert stages is not None
        split = stages.decode_ms is not None
        for stage, colour in STAGE_COLOURS.items():
            value = getattr(stages, f"{stage}_ms")
            if (stage == "preprocess") == split or value is None:
                continue  # the split stages where recorded, else the one preprocess figure
            axes.barh(row, value, left=left, color=colour, label=stage if row == 0 or not split else None)
            left += value
    axes.set_yticks(range(len(with_stages)), [v.name for v in with_stages])
    axes.set_xlabel("ms per image from an encoded file, batch 1 (median)")
    axes.set_title("Where the time goes")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _svg(figure)


def confusion_plot(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> str:
    plt = _pyplot()
    size = max(3.5, 0.45 * len(class_names) + 1.5)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                axes.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    return _svg(figure)
