"""`edgekit quantize`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.backends.placements import PLACEMENTS
from edgekit.cli.options import (
    calib_option,
    calib_size_option,
    crop_option,
    force_option,
    json_option,
    method_option,
    print_json,
    quiet_option,
    resize_option,
)


@click.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--precision",
    "-p",
    type=click.Choice(["int8", "fp16"]),
    required=True,
    help="int8: explicit Q/DQ from --calib images; fp16: typed FP16 weights and activations.",
)
@calib_option
@calib_size_option
@method_option
@click.option(
    "--placement",
    type=click.Choice(PLACEMENTS),
    default="cpu",
    show_default=True,
    help="cpu: ONNX Runtime's fast CPU placement; tensorrt: TensorRT's explicit-quantization rules.",
)
@resize_option
@crop_option
@click.option(
    "--out", "-o", type=click.Path(path_type=Path, dir_okay=False), required=True, help="The ONNX file to write."
)
@force_option
@quiet_option
@json_option
def quantize(
    model: Path,
    precision: str,
    calib: Path | None,
    calib_size: int,
    method: str | None,
    placement: str,
    resize: int | None,
    crop: int | None,
    out: Path,
    force: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Write an INT8 (explicit Q/DQ) or FP16 (typed) copy of an FP32 ONNX classifier.

    The file carries its precision, so it runs in ONNX Runtime on a CPU and builds in TensorRT
    8.6–11.x without precision flags. tensorrt-placement files are checked against TensorRT's
    Q/DQ rules before they are written.
    """
    from edgekit.core.install import require_workstation

    require_workstation("quantize")
    from edgekit.core.progress import Progress
    from edgekit.pipeline.quantize_file import QuantizeRequest, quantize_file

    request = QuantizeRequest(model, out, precision, calib, calib_size, method, placement, resize, crop, force)
    result = quantize_file(request, Progress(enabled=not (quiet or as_json)))
    if as_json:
        print_json(result)
    else:
        sizes = f"{result['size_bytes'] / 1e6:.1f} MB, FP32 {result['fp32_size_bytes'] / 1e6:.1f} MB"
        click.echo(f"{precision} model: {out} ({sizes})")
        if result.get("placement_rules") is not None:
            click.echo(f"  {placement} placement's Q/DQ rules (its parser's): {result['placement_rules']}")
