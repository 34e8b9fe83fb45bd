"""`edgekit prune`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import (
    PRUNING_SECTIONS,
    SectionedCommand,
    arch_option,
    classes_option,
    crop_option,
    devices_option,
    force_option,
    json_option,
    max_accuracy_drop_option,
    print_json,
    pruning_options,
    quiet_option,
    resize_option,
    target_option,
    threads_option,
    trust_pickle_option,
)


@click.command(
    cls=SectionedCommand,
    sections={
        **PRUNING_SECTIONS,
        "Accuracy and latency": ("val", "max_accuracy_drop", "target", "devices", "threads"),
        "Input": ("arch", "classes", "trust_pickle", "resize", "crop"),
    },
    rest="Output",
)
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Pruned checkpoint to write.")
@pruning_options("--ratio")
@target_option
@click.option(
    "--val",
    type=click.Path(path_type=Path, file_okay=False),
    help="Labelled images for before/after top-1 (default: 10% of --recover-data).",
)
@max_accuracy_drop_option
@devices_option("latency (before, after and each step of --target-latency)")
@force_option
@classes_option
@resize_option
@crop_option
@threads_option
@arch_option
@trust_pickle_option
@quiet_option
@json_option
def prune(
    model: Path,
    out: Path,
    target: str | None,
    val: Path | None,
    max_accuracy_drop: float | None,
    devices: tuple[str, ...],
    force: bool,
    classes: Path | None,
    resize: int | None,
    crop: int | None,
    threads: int | None,
    arch: str | None,
    trust_pickle: bool,
    quiet: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Remove whole channels from MODEL (a torchvision classifier's checkpoint) with torch-pruning, then recover.

    Give a --prune-ratio, a --target-macs / --target-latency to prune in steps until it is met, or only a
    --max-accuracy-drop to search the largest ratio within it (needs --recover-data; an interrupted search
    resumes). The
    pruned checkpoint stores its channel counts, so `edgekit compile` loads it like any other.
    """
    from edgekit.core.install import require_workstation

    require_workstation("prune")
    from edgekit.cli.options import prune_settings
    from edgekit.core.progress import Progress
    from edgekit.data.classes import read_class_file
    from edgekit.optimize.prune_config import PruneConfig
    from edgekit.pipeline.prune import run_prune

    progress = Progress(enabled=not (quiet or as_json))
    latency_probe = None
    if devices:
        from edgekit.remote.devices import get_devices
        from edgekit.remote.latency import DeviceTimer, device_latency_probe

        boards, target = get_devices(devices, target)
        timer = DeviceTimer(boards, progress.note)
        latency_probe = lambda target, crop, work: device_latency_probe(timer, target, crop, work)  # noqa: E731
    config = PruneConfig(
        model=model,
        out=out,
        settings=prune_settings(options, max_accuracy_drop),
        target=target,
        val=val,
        max_accuracy_drop=max_accuracy_drop,
        threads=threads,
        trust_pickle=trust_pickle,
        arch=arch,
        force=force,
        class_names=tuple(read_class_file(classes)) if classes else None,
        resize=resize,
        crop=crop,
    )
    result = run_prune(config, progress, latency_probe)
    if as_json:
        print_json(result)
        return
    click.echo(f"pruned checkpoint: {out}")
    for line in summary_lines(result):
        click.echo(f"  {line}")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Before → after, one measure per line (also printed by `edgekit compile --prune`)."""
    before, after = report["before"], report["after"]
    lines = [
        f"MACs       {before['macs'] / 1e6:,.0f}M → {after['macs'] / 1e6:,.0f}M ({report['macs_removed']:.0%} fewer)",
        f"parameters {before['params'] / 1e6:.2f}M → {after['params'] / 1e6:.2f}M",
        f"ONNX size  {before['onnx_bytes'] / 1e6:.1f} MB → {after['onnx_bytes'] / 1e6:.1f} MB",
    ]
    if before["latency_ms"] is not None and after["latency_ms"] is not None:
        lines.append(
            f"latency    {before['latency_ms']:.2f} ms → {after['latency_ms']:.2f} ms "
            f"({_change(before['latency_ms'], after['latency_ms'])}; {report['latency']['how']})"
        )
    else:
        lines.append(f"latency    {report['latency']['how']}")
    lines += _accuracy_lines(report)
    if report.get("sparsity"):
        lines.append(f"2:4 sparse {len(report['sparsity']['layers'])} convolutions ({report['sparsity']['speed-up']})")
    return lines


def _accuracy_lines(report: dict[str, Any]) -> list[str]:
    """Original, pruned and final top-1 with their intervals, and the drop against the original (paired)."""
    accuracy = report.get("accuracy")
    if not accuracy:
        return []
    from edgekit.measure.results import with_interval

    def top1(name: str) -> str:
        return with_interval(accuracy[name]["top1"], accuracy[name]["ci95"])

    recovered = report.get("recovery") is not None
    chain = f"original {top1('original')} → pruned {top1('pruned')}"
    chain += f" → recovered {top1('final')}" if recovered else ""
    lines = [f"top-1      {chain} ({accuracy['original']['images']} images)"]
    drop = accuracy["drop_vs_original"]
    low, high = drop["ci95_pts"]
    lines.append(
        f"drop       {drop['drop_pts']:.2f} pts against the original (95 % interval {low:.2f} to {high:.2f}, paired)"
    )
    search = report.get("search")
    if search:
        tried = ", ".join(f"{t['ratio']:.0%} {t['verdict']}" for t in search["tried"])
        lines.append(f"search     budget {search['budget_pts']:g} pts; tried {tried}; chose {search['chosen']:.0%}")
    return lines


def _change(before: float, after: float) -> str:
    share = 1 - after / before
    return f"{share:.0%} less" if share >= 0 else f"{-share:.0%} more"
