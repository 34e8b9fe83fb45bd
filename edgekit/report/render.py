"""The report as data (sections of tables and figures), written out as HTML and as Markdown.

Both formats come from the same `Table` objects, so the page and the Markdown can never disagree.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence

from edgekit.measure.decide import Budget
from edgekit.report import figures
from edgekit.report.analysis import Headline, Reference, Row, pareto_front, reference_of, summary_rows
from edgekit.report.analysis import headline as choose_headline
from edgekit.report.variants import Variant

MAX_CONFUSION_PLOT_CLASSES = 30


@dataclasses.dataclass
class Table:
    id: str
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclasses.dataclass
class Section:
    title: str
    text: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)  # what a reader must not miss
    figures: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (id, inline SVG)
    tables: list[Table] = dataclasses.field(default_factory=list)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _pct_ci(value: float | None, interval: tuple[float, float] | None) -> str:
    """A proportion with its 95 % interval, as every accuracy figure is shown."""
    if value is None or interval is None:
        return _pct(value)
    return f"{value:.2%} ({interval[0]:.1%}–{interval[1]:.1%})"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{-value + 0.0:+.2f}"  # a change in top-1: a drop is negative (no "-0.00")


def build_sections(variants: Sequence[Variant], budget: float) -> tuple[Headline, list[Section]]:
    reference = reference_of(variants)
    rows = summary_rows(variants, reference)
    points = [(r.p50_ms, r.top1) for r in rows if r.top1 is not None]
    measured = [i for i, r in enumerate(rows) if r.top1 is not None]
    front = [measured[i] for i in pareto_front(points)]
    chosen = choose_headline(variants, reference, Budget(budget))
    sections = [
        _overview(rows, front, reference, budget, variants),
        _latency(variants),
        _accuracy(variants, chosen),
        _optimisations(variants),
        _reproduce(variants),
    ]
    return chosen, sections


def _overview(
    rows: list[Row], front: list[int], reference: Reference, budget: float, variants: Sequence[Variant]
) -> Section:
    table = Table(
        "variants",
        f"All variants against the FP32 reference ({reference.kind or 'not timed'}: p50 {_ms(reference.p50_ms)} ms, "
        f"top-1 {_pct(reference.top1)})",
        ["variant", "n", "p50 ms", "p90 ms", "p99 ms", "images/s (batch 8)", "speed-up", "top-1 (95 % interval)",
         "Δ top-1 (pts)", "agreement with FP32 (95 % interval)", "model MB", "Pareto front"],
        [
            [r.name, str(r.iterations or "—"), _ms(r.p50_ms), _ms(r.p90_ms), _ms(r.p99_ms),
             "—" if r.images_per_s_b8 is None else f"{r.images_per_s_b8:.1f}",
             "—" if r.speedup is None else f"{r.speedup:.2f}×", _pct_ci(r.top1, r.top1_ci95),
             _signed(r.drop_pts), _pct_ci(r.agreement, r.agreement_ci95), f"{r.model_mb:.1f}",
             "yes" if i in front else ""]
            for i, r in enumerate(rows)
        ],
    )  # fmt: skip
    notes = sorted({r.measured_on for r in rows if not r.measured_on.startswith("this host (the target")})
    warnings = [f"Latency measured on {note}." for note in notes]
    hosts = {(v.result.environment.cpu, v.result.environment.threads) for v in variants}
    if len(hosts) > 1:
        warnings.append(
            "The results come from different hosts or thread counts ("
            + "; ".join(f"{cpu}, {threads} threads" for cpu, threads in sorted(hosts))
            + "): their latencies are not comparable."
        )
    image_counts = {v.result.accuracy.images for v in variants if v.result.accuracy}
    if len(image_counts) > 1:
        warnings.append(
            f"Accuracy was measured on different numbers of images ({', '.join(map(str, sorted(image_counts)))}): "
            "bench every variant with the same --val folder."
        )
    sparse_on_cpu = [v.name for v in variants if v.bundle.sparse and v.bundle.target_kind == "cpu"]
    if sparse_on_cpu:
        warnings.append(
            f"2:4 sparsity ({', '.join(sparse_on_cpu)}) gains nothing on a CPU backend, which computes the zeros; "
            "it pays off only in TensorRT with sparse weights on Ampere-or-newer GPUs."
        )
    return Section(
        "Latency and accuracy",
        warnings=warnings,
        figures=[("fig-pareto", figures.pareto_plot(rows, front, reference, budget))],
        tables=[table],
    )


def _latency(variants: Sequence[Variant]) -> Section:
    stages = Table(
        "stages",
        "From an encoded file to a label, batch 1: median ms per stage (the bundle's decode path)",
        [
            "variant",
            "preprocess ms",
            "network ms",
            "postprocess ms",
            "read ms",
            "decode ms",
            "resize/crop ms",
            "normalise ms",
            "end to end p50 ms",
            "× network",
        ],
        [
            [
                v.name,
                _ms(s.preprocess_ms),
                _ms(s.network_ms),
                f"{s.postprocess_ms:.3f}",
                *[_ms(value) for value in (s.read_ms, s.decode_ms, s.resize_crop_ms, s.normalise_ms)],
                _ms(s.end_to_end_p50_ms),
                "—" if s.end_to_end_vs_network is None else f"{s.end_to_end_vs_network:.2f}×",
            ]
            for v in variants
            if (s := v.result.stages)
        ],
    )
    return Section(
        "Latency in detail",
        figures=[
            ("fig-latency", figures.latency_plot(variants)),
            ("fig-throughput", figures.throughput_plot(variants)),
            ("fig-stages", figures.stage_plot(variants)),
        ],
        tables=[stages],
    )


def _accuracy(variants: Sequence[Variant], chosen: Headline) -> Section:
    with_accuracy = [v for v in variants if v.top1 is not None]
    if not with_accuracy:
        return Section(
            "Accuracy", text=["Accuracy was not measured: run `edgekit bench --val DIR` with labelled images."]
        )
    classes = variants[0].result.classes
    reference = next(
        (ref for v in with_accuracy if v.result.accuracy and (ref := v.result.accuracy.reference) is not None), None
    )
    header = ["class", *(["FP32 reference"] if reference else []), *[v.name for v in with_accuracy]]
    per_class = []
    for name in classes:
        row = [name]
        if reference:
            row.append(_pct(reference.per_class_top1.get(name)))
        row += [_pct(v.accuracy.per_class_top1.get(name) if v.accuracy else None) for v in with_accuracy]
        per_class.append(row)
    first = with_accuracy[0].result.accuracy
    images = first.images if first else 0
    section = Section(
        "Accuracy",
        text=[f"Top-1 per class on {images} labelled images."],
        tables=[Table("per-class", "Per-class top-1", header, per_class)],
    )
    matrix = chosen.variant.accuracy.confusion if chosen.variant.accuracy else None
    if matrix is not None and len(classes) <= MAX_CONFUSION_PLOT_CLASSES:
        title = f"Confusion matrix: {chosen.variant.name}"
        section.figures.append(("fig-confusion", figures.confusion_plot(matrix, classes, title)))
    elif chosen.variant.top1 is not None:
        section.text.append(f"No confusion matrix plot: {len(classes)} classes are too many to read in one.")
    return section


def _optimisations(variants: Sequence[Variant]) -> Section:
    quantized = Table(
        "quantization",
        "Precision, and layers kept in FP32 to meet the accuracy budget",
        ["variant", "precision", "computed in", "layers kept in FP32"],
        [
            [v.name, v.bundle.precision, v.bundle.execution_precision or "—", ", ".join(v.bundle.keep_fp32) or "none"]
            for v in variants
        ],
    )  # fmt: skip
    pruned = [v for v in variants if v.bundle.pruning]
    section = Section("What was optimised", tables=[quantized])
    accounted = [v for v in pruned if v.bundle.pruning and v.bundle.pruning.accuracy]
    if accounted:
        section.tables.append(_pruning_accounting(accounted))
    if pruned:
        layers = list(pruned[0].bundle.pruning.channels) if pruned[0].bundle.pruning else []
        section.tables.append(
            Table(
                "channels",
                "Output channels per convolution, before → after pruning",
                ["layer", *[v.name for v in pruned]],
                [[layer, *[_channels(_layer(v, layer)) for v in pruned]] for layer in layers],
            )
        )
    return section


def _pruning_accounting(variants: Sequence[Variant]) -> Table:
    """What pruning cost, against the original model (not only the pruned FP32), each figure with its sample
    size and interval: measured by `edgekit prune` on its validation images."""

    def top1(record: tuple[float, tuple[float, float] | None] | None) -> str:
        return _pct_ci(*record) if record else _pct(None)

    rows = []
    for v in variants:
        accuracy = v.bundle.pruning.accuracy if v.bundle.pruning else None
        if accuracy is None:
            continue
        drop = accuracy.drop
        low, high = drop.interval_pts()
        rows.append([
            v.name, str(accuracy.images), top1(accuracy.original), top1(accuracy.pruned), top1(accuracy.final),
            f"{drop.drop_pts:+.2f} ({low:+.2f} to {high:+.2f})",
        ])  # fmt: skip
    return Table(
        "pruning_accuracy",
        "Pruning's cost against the original model, on the pruning's validation images (95 % intervals; the drop "
        "is paired on the same images)",
        ["variant", "images", "original FP32", "pruned FP32", "recovered FP32", "drop vs original (pts)"],
        rows,
    )


def _layer(variant: Variant, layer: str) -> tuple[int, int] | None:
    return variant.bundle.pruning.channels.get(layer) if variant.bundle.pruning else None


def _channels(pair: tuple[int, int] | None) -> str:
    return "—" if pair is None else f"{pair[0]} → {pair[1]}"


def _reproduce(variants: Sequence[Variant]) -> Section:
    rows = []
    for v in variants:
        env = v.result.environment
        libraries = ", ".join(f"{k} {val}" for k, val in env.libraries.items())
        rows.append(
            [v.name, env.date, f"edgekit {env.edgekit}", v.bundle.target, env.cpu, str(env.threads), libraries,
             env.command, str(v.path)]
        )  # fmt: skip
    return Section(
        "Reproduce",
        tables=[
            Table(
                "environment",
                "Where and with what each result was measured",
                ["variant", "date", "version", "target", "host CPU", "threads", "libraries", "command", "results"],
                rows,
            )
        ],
    )


def headline_text(chosen: Headline, reference: Reference, variants: Sequence[Variant]) -> str:
    v = chosen.variant
    parts = [f"{v.name}"]
    reference_p50 = v.reference_p50_ms or reference.p50_ms  # timed in its own run, in turns, where it was
    if chosen.speedup is not None and reference_p50 is not None:
        parts.append(
            f"{chosen.speedup:.2f}× faster than the FP32 reference ({reference.kind}) "
            f"({v.p50_ms:.2f} ms vs {reference_p50:.2f} ms, p50 batch 1)"
        )
    else:
        parts.append(f"p50 {v.p50_ms:.2f} ms at batch 1")
    if chosen.drop_pts is not None:
        parts.append(f"top-1 {_signed(chosen.drop_pts)} pts ({_pct(v.top1)} vs {_pct(reference.top1)})")
    fp32 = [x for x in variants if x.bundle.precision == "fp32" and not x.bundle.pruning]
    if fp32 and fp32[0] is not v:
        parts.append(f"{fp32[0].p50_ms / v.p50_ms:.2f}× faster than the FP32 {fp32[0].bundle.backend} bundle")
    size = f"model {v.bundle.model_bytes / 1e6:.1f} MB"
    if fp32 and fp32[0] is not v:
        size += f" ({v.bundle.model_bytes / fp32[0].bundle.model_bytes:.0%} of FP32)"
    parts.append(size)
    return f"Best: {', '.join(parts)}. Chosen as the {chosen.reason}."


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
  color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.headline{background:#eef5ff;border-left:4px solid #4c78a8;padding:.8rem 1rem;font-size:1.05rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.85rem}
caption{text-align:left;font-weight:600;margin-bottom:.3rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f5f5f5}figure{margin:1rem 0}svg{max-width:100%;height:auto}.note{color:#a15c00}
"""


def to_html(title: str, headline: str, sections: Sequence[Section]) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="headline" id="headline">{html.escape(headline)}</p>',
    ]
    for section in sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        out += [f'<p class="note">{html.escape(line)}</p>' for line in section.warnings]
        out += [f"<p>{html.escape(line)}</p>" for line in section.text]
        out += [f'<figure id="{fid}">{svg}</figure>' for fid, svg in section.figures]
        for table in section.tables:
            out.append(f'<table id="{table.id}"><caption>{html.escape(table.caption)}</caption><thead><tr>')
            out += [f"<th>{html.escape(cell)}</th>" for cell in table.header]
            out.append("</tr></thead><tbody>")
            for row in table.rows:
                out.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
            out.append("</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def to_markdown(title: str, headline: str, sections: Sequence[Section]) -> str:
    out = [f"# {title}", "", f"**{headline}**"]
    for section in sections:
        out += ["", f"## {section.title}", ""]
        for line in section.warnings:
            out += [f"> **{line}**", ""]
        for line in section.text:
            out += [line, ""]
        if section.figures:
            out.append(f"_Plots ({', '.join(fid for fid, _ in section.figures)}) are in report.html._")
        for table in section.tables:
            out += ["", f"**{table.caption}**", "", "| " + " | ".join(table.header) + " |"]
            out.append("|" + "|".join("---" for _ in table.header) + "|")
            out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows]
    return "\n".join(out) + "\n"
