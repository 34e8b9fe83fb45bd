"""`edgekit report`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import json_option, max_accuracy_drop_option, print_json, quiet_option, with_old_names
from edgekit.measure.decide import DEFAULT_MAX_DROP_PTS


@click.command()
@click.argument("results", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False), required=True, help="Report directory.")
@max_accuracy_drop_option
@click.option("--title", default=None, help="Page title (default: model and target).")
@quiet_option
@json_option
@with_old_names(("--budget", "--max-accuracy-drop", "max_accuracy_drop"))
def report(
    results: tuple[Path, ...],
    out: Path,
    max_accuracy_drop: float | None,
    title: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Write report.html (self-contained, plots inline) and report.md from `edgekit bench` results.

    RESULTS are bench.json files (or the directories holding them) of variants of one model.
    """
    from edgekit.core.install import require_workstation

    require_workstation("report")
    from edgekit.report.write import write_report

    budget = DEFAULT_MAX_DROP_PTS if max_accuracy_drop is None else max_accuracy_drop
    written = write_report(list(results), out, budget, title)
    if as_json:
        print_json(written)
        return
    click.echo(f"report: {written['html']}")
    click.echo(f"        {written['markdown']}")
    head = written["headline"]
    speedup = f", {head['speedup']:.2f}× faster than FP32" if head["speedup"] else ""
    drop = f", top-1 {-head['drop_pts'] + 0.0:+.2f} pts" if head["drop_pts"] is not None else ""
    click.echo(f"best: {head['variant']}{speedup}{drop} ({head['reason']})")
