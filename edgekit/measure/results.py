"""The bench results schema (bench.json) and its Markdown summary: what `edgekit report` reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekit.core.files import write_text_atomic

RESULTS_SCHEMA = 2  # 2: model_id, stages, confusion matrices, quantization/pruning facts


def write_results(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "bench.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(out / "bench.md", summary_markdown(results))


def with_interval(value: float, interval: Sequence[float] | None) -> str:
    """'82.14% (95 % interval 75.0%–87.6%)': a proportion with its interval where one was recorded."""
    if not interval:
        return f"{value:.2%}"
    return f"{value:.2%} (95 % interval {interval[0]:.1%}–{interval[1]:.1%})"


def _ms(value: float | None) -> str:
    """A latency, or a dash where the sample was too small to support it (a tail percentile, `core.percentiles`)."""
    return "—" if value is None else f"{value:.2f}"


def summary_markdown(results: dict[str, Any]) -> str:
    bundle, env = results["bundle"], results["environment"]
    lines = [
        f"# edgekit bench: {Path(bundle['path']).name}",
        "",
        f"Target `{bundle['target']}`, backend `{bundle['backend']}`, precision `{bundle['precision']}`. "
        f"Measured {env['date']} on {env['cpu']} ({env['threads']} threads).",
        "",
        "| model | batch | n | p50 ms | p90 ms | p99 ms | mean ms | images/s | speed-up (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("reference", "bundle"):
        for row in results["latency"][name]:
            speedup = results["speedup_p50_vs_reference"].get(str(row["batch"])) if name == "bundle" else None
            lines.append(
                f"| {name} | {row['batch']} | {row['iterations']} | {row['p50_ms']:.2f} | {_ms(row['p90_ms'])} | "
                f"{_ms(row['p99_ms'])} | "
                f"{row['mean_ms']:.2f} | {row['images_per_s']:.1f} | {f'{speedup:.2f}×' if speedup else '—'} |"
            )
    for row in results["latency"]["bundle"]:
        if "device_compute_ms" in row:
            device = row["device_compute_ms"]
            lines.append(
                f"\nBatch {row['batch']}: GPU compute {device['p50']:.2f} ms p50 / {_ms(device['p99'])} ms p99 "
                f"(network alone, CUDA events) of {row['p50_ms']:.2f} ms end to end."
            )
    stages = results.get("stages")
    if stages and "gpu" in stages:
        gpu = stages["gpu"]
        lines.append(
            f"\nOn the GPU, per image (CUDA events): upload {gpu['upload_ms']:.3f} ms, preprocessing kernel "
            f"{gpu['preprocess_ms']:.3f} ms, network {gpu['network_ms']:.3f} ms, download {gpu['download_ms']:.3f} ms."
        )
    trip = results.get("end_to_end")
    if trip:
        lines += [
            "",
            f"From an encoded file to a label, batch 1, median of {trip['exact']['images']} images from {trip['from']} "
            f"({trip['image_size']}; ms):",
            "",
            "| decode path | read | decode | resize/crop | normalise | network | postprocess | end to end p50 | p90 "
            "| × network |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for path in ("exact", "fast"):
            row = trip[path]
            shipped = " (this bundle)" if path == trip.get("shipped_decode") else ""
            lines.append(
                f"| {path}{shipped} | {row['read_ms']:.2f} | {row['decode_ms']:.2f} | {row['resize_crop_ms']:.2f} | "
                f"{row['normalise_ms']:.2f} | {row['network_ms']:.2f} | {row['postprocess_ms']:.3f} | "
                f"{row['end_to_end_p50_ms']:.2f} | {_ms(row['end_to_end_p90_ms'])} | "
                f"{row['end_to_end_vs_network']:.2f}× |"
            )
        agreement = trip["fast_vs_exact"]
        lines.append(
            f"\nThe fast path agreed with the exact one on "
            f"{with_interval(agreement['top1_agreement'], agreement['top1_agreement_ci95'])} of these images' top-1 "
            "(`edgekit compile --preprocess fast` ships it)."
        )
    throughput = results.get("throughput")
    if throughput:
        lines.append(
            f"\nThroughput from files, batch {throughput['batch']}, {throughput['decode_workers']} decode threads: "
            f"{throughput['images_per_s']:.1f} images/s ({throughput['ratio']:.2f}× the network's own "
            f"{throughput['network_images_per_s']:.1f})."
        )
    accuracy = results.get("accuracy")
    if accuracy:
        lines += [
            "",
            f"Accuracy on {accuracy['images']} labelled images:",
            "",
            "| model | top-1 | agreement with reference |",
        ]
        lines.append("|---|---:|---:|")
        for name, row in accuracy["models"].items():
            top1 = with_interval(row["top1"], row.get("top1_ci95"))
            agreement = row.get("top1_agreement_with_reference")
            shown = "—" if agreement is None else with_interval(agreement, row.get("top1_agreement_ci95"))
            lines.append(f"| {name} | {top1} | {shown} |")
    lines += ["", f"Measured on {results['measured_on']}."]
    if results["notes"]:
        lines += ["", *[f"- {note}" for note in results["notes"]]]
    return "\n".join(lines) + "\n"
