"""`edgekit sweep`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import (
    calib_option,
    iterations_option,
    json_option,
    max_accuracy_drop_option,
    print_json,
    prune_ratio_option,
    quiet_option,
    target_option,
    threads_option,
    trust_pickle_option,
    with_old_names,
)
from edgekit.measure.decide import DEFAULT_MAX_DROP_PTS


@click.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@target_option
@click.option(
    "--val",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Labelled images (one sub-directory per class): accuracy of every variant.",
)
@click.option("--precisions", default="fp32,int8", show_default=True, help="Comma-separated precisions.")
@prune_ratio_option
@calib_option
@click.option("--recover-data", type=click.Path(path_type=Path, file_okay=False), help="Recovery images for pruning.")
@click.option("--recover-epochs", type=click.IntRange(min=0), default=None, help="Recovery epochs (default 3).")
@max_accuracy_drop_option
@iterations_option
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False), required=True, help="Sweep directory.")
@click.option(
    "--device",
    "devices",
    multiple=True,
    help="Benchmark on this device over SSH (`edgekit devices`); repeat for several, measured in parallel.",
)
@threads_option
@trust_pickle_option
@quiet_option
@json_option
@with_old_names(("--prune", "--prune-ratio", "prune_ratio"), ("--budget", "--max-accuracy-drop", "max_accuracy_drop"))
def sweep(
    model: Path,
    target: str | None,
    val: Path,
    precisions: str,
    prune_ratio: tuple[float | str, ...] | None,
    calib: Path | None,
    recover_data: Path | None,
    recover_epochs: int | None,
    max_accuracy_drop: float | None,
    iterations: int,
    out: Path,
    devices: tuple[str, ...],
    threads: int | None,
    trust_pickle: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Build every precision × pruning ratio of MODEL, benchmark them in one run, and write a report.

    Builds are cached in OUT by content hash: re-running after adding a variant builds only that one.
    """
    from edgekit.core.install import require_workstation

    require_workstation("sweep")
    from edgekit.core.progress import Progress
    from edgekit.pipeline.sweep import SweepConfig, run_sweep

    config = SweepConfig(
        model=model,
        target=target,
        val=val,
        out=out,
        precisions=tuple(p.strip() for p in precisions.split(",") if p.strip()),
        prune_ratios=_ratios(prune_ratio),
        calib=calib,
        recover_data=recover_data,
        recover_epochs=recover_epochs,
        max_accuracy_drop=DEFAULT_MAX_DROP_PTS if max_accuracy_drop is None else max_accuracy_drop,
        iterations=iterations,
        threads=threads,
        trust_pickle=trust_pickle,
    )
    progress = Progress(enabled=not (quiet or as_json))
    bench_elsewhere = None
    if devices:
        from edgekit.remote.bench import bench_on_devices
        from edgekit.remote.devices import get_device

        boards = [get_device(name) for name in dict.fromkeys(devices)]
        bench_elsewhere = lambda configs: bench_on_devices(boards, configs, progress.note)  # noqa: E731
    result = run_sweep(config, progress, bench_elsewhere)
    if as_json:
        print_json(result)
        return
    click.echo(f"built {len(result['built'])}, reused {len(result['reused'])} cached, failed {len(result['failed'])}")
    for name, reason in result["failed"].items():
        click.echo(f"  not built: {name}: {reason}")
    for name, reason in result.get("lost", {}).items():
        click.echo(f"  not measured on {name}: {reason}")
    click.echo(f"report: {result['report']['html']}")
    click.echo(f"        {result['report']['markdown']}")
    click.echo(f"best: {result['report']['headline']['variant']} ({result['report']['headline']['reason']})")


def _ratios(given: tuple[float | str, ...] | None) -> tuple[float, ...]:
    if given is None:
        return (0.0,)
    if "auto" in given:
        raise click.BadParameter(
            "sweep compares the ratios you list (0 = unpruned); 'auto' searches one ratio: `edgekit prune "
            "--prune-ratio auto`",
            param_hint="--prune-ratio",
        )
    return tuple(float(ratio) for ratio in given)
