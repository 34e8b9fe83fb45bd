"""`edgekit doctor`."""

from __future__ import annotations

import click

from edgekit.cli.options import json_option, print_json

_MARKS = {"ok": "ok", "missing": "--", "problem": "!!", "info": ".."}


@click.command("doctor")
@json_option
def doctor(as_json: bool) -> None:
    """What this machine can do with edgekit and what is missing, each with its fix.

    Python and the install (device or workstation), each runtime (ONNX Runtime, OpenVINO, LiteRT,
    TensorRT: version and where it is imported from), the Jetson release, GPU, CUDA driver and binding,
    DLA cores, power mode and clocks, free memory, the target this machine matches, and whether
    `edgekit build` can run here.
    """
    from edgekit.pipeline.doctor import diagnose

    report = diagnose()
    if as_json:
        print_json(report)
        return
    click.echo(f"edgekit {report['edgekit']} on Python {report['python']} ({report['machine']})")
    width = max(len(f["topic"]) for f in report["findings"])
    for finding in report["findings"]:
        fix = f"  → {finding['fix']}" if finding["fix"] else ""
        click.echo(f"[{_MARKS[finding['status']]}] {finding['topic']:<{width}}  {finding['detail']}{fix}")
