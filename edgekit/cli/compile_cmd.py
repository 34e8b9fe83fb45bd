"""`edgekit compile`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import (
    PRUNING_SECTIONS,
    SectionedCommand,
    arch_option,
    backend_option_values,
    backend_options,
    calib_option,
    calib_size_option,
    classes_option,
    crop_option,
    devices_option,
    force_option,
    json_option,
    max_accuracy_drop_option,
    method_option,
    print_json,
    pruning_options,
    quiet_option,
    resize_option,
    target_option,
    threads_option,
    trust_pickle_option,
)


def _percentage(value: float) -> float:
    if 0 < value <= 1:
        percent = f"{value * 100:g}"
        raise click.BadParameter(f"is a percentage: {value:g} means {value:g} %; for {percent} % pass {percent}")
    return value


@click.command(
    "compile",
    cls=SectionedCommand,
    sections={
        "Input": ("arch", "classes", "trust_pickle", "transform_input", "resize", "crop", "preprocess",
                  "normalise_in_model"),
        "Target": ("target", "backend", "devices", "threads"),
        "Precision and accuracy": ("precision", "calib", "calib_size", "method", "min_agreement", "max_accuracy_drop",
                                   "val", "parity_images"),
        **PRUNING_SECTIONS,
        "Output": ("out", "force", "quiet", "as_json"),
    },
    rest="TensorRT (the engine is built on the device by `edgekit build`; these are recorded for it)",
)  # fmt: skip
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@target_option
@click.option(
    "--precision",
    "-p",
    type=click.Choice(["fp32", "fp16", "int8", "auto"]),
    default="fp32",
    show_default=True,
    help="auto: the fastest precision, measured here, whose accuracy fits --max-accuracy-drop (needs --val).",
)
@click.option("--backend", default=None, help="Force a backend instead of the target's fastest available one.")
@devices_option("each precision of --precision auto")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, help="Bundle directory to create.")
@force_option
@classes_option
@click.option(
    "--transform-input/--no-transform-input",
    default=None,
    help="GoogLeNet's and Inception v3's ImageNet re-normalisation inside the model (default: from the "
    "checkpoint, else decided from your images).",
)
@resize_option
@crop_option
@click.option(
    "--preprocess",
    type=click.Choice(["exact", "fast"]),
    default=None,
    help="exact: torchvision's transform bit for bit (default). fast: large JPEGs decoded at 1/2-1/8 scale by "
    "libjpeg (several times faster on camera photos); its agreement with exact is measured and recorded.",
)
@click.option(
    "--normalise-in-model",
    is_flag=True,
    help="The model takes the uint8 RGB crop (N,H,W,3) and normalises it itself (onnxruntime, openvino): no "
    "float pass on the CPU, and you can feed raw camera crops. Its agreement with float input is recorded.",
)
@click.option(
    "--val",
    type=click.Path(path_type=Path, file_okay=False),
    help="Images for the parity check; with class sub-directories, accuracy too.",
)
@click.option(
    "--parity-images",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="At most this many --val images for the parity check.",
)
@calib_option
@calib_size_option
@method_option
@click.option(
    "--min-agreement",
    type=click.FloatRange(min=0, max=100),
    default=99.0,
    show_default=True,
    callback=lambda ctx, param, value: _percentage(value),
    help="Accuracy guard: % of held-out calibration images (never calibrated on) on which the INT8/FP16 build "
    "must give FP32's top-1; below it edgekit tries other calibrations, quantizers and FP32 layers. 0: off.",
)
@max_accuracy_drop_option
@pruning_options("--prune")
@backend_options("build")
@threads_option
@arch_option
@trust_pickle_option
@quiet_option
@json_option
def compile_command(
    model: Path,
    target: str | None,
    precision: str,
    backend: str | None,
    out: Path | None,
    force: bool,
    classes: Path | None,
    transform_input: bool | None,
    resize: int | None,
    crop: int | None,
    preprocess: str | None,
    normalise_in_model: bool,
    val: Path | None,
    parity_images: int,
    calib: Path | None,
    calib_size: int,
    method: str | None,
    min_agreement: float,
    max_accuracy_drop: float | None,
    threads: int | None,
    arch: str | None,
    trust_pickle: bool,
    quiet: bool,
    as_json: bool,
    devices: tuple[str, ...],
    **stage_options: Any,
) -> None:
    """Compile MODEL (a torchvision classifier's PyTorch checkpoint, or an ONNX file) into a bundle for a device.

    The bundle directory holds the model file and manifest.json (hashes, classes, preprocessing,
    parity figures, tool versions). It is only written if the compiled model reproduces the FP32
    reference; an error leaves nothing behind.
    """
    from edgekit.core.install import require_workstation

    require_workstation("compile")
    from edgekit.backends.registry import get_backend
    from edgekit.cli.options import prune_settings
    from edgekit.core.progress import Progress
    from edgekit.data.classes import read_class_file
    from edgekit.measure.results import with_interval
    from edgekit.optimize.prune_config import PruneSettings
    from edgekit.pipeline.compile_config import CompileConfig, resolve
    from edgekit.pipeline.precision_auto import compile_model
    from edgekit.runtime.describe import accuracy_line, guard_rows

    progress = Progress(enabled=not quiet)
    settings: PruneSettings = prune_settings(stage_options, max_accuracy_drop)
    timer = None
    if devices:
        from edgekit.remote.devices import get_devices
        from edgekit.remote.latency import DeviceTimer

        boards, target = get_devices(devices, target)
        timer = DeviceTimer(boards, progress.note)
    # Resolved here only so that the output path chosen by the library can be printed.
    request = CompileConfig(
        model=model,
        target=target,
        out=out,
        precision=precision,
        backend=backend,
        force=force,
        class_names=tuple(read_class_file(classes)) if classes else None,
        transform_input=transform_input,
        resize=resize,
        crop=crop,
        preprocess=preprocess,
        normalise_in_model=normalise_in_model,
        val=val,
        parity_images=parity_images,
        trust_pickle=trust_pickle,
        arch=arch,
        threads=threads,
        target_from_host=target is None,
        calib=calib,
        calib_size=calib_size,
        method=method,
        min_agreement=min_agreement / 100,
        max_accuracy_drop=max_accuracy_drop,
        backend_options=backend_option_values(stage_options, "build"),
        prune=settings if settings.requested else None,
    )
    config = resolve(request)
    manifest = compile_model(config, progress, timer)
    if as_json:
        print_json({"bundle": str(config.out), **manifest.to_dict()})
        return
    click.echo(f"bundle: {config.out}")
    if manifest.has("precision_auto"):
        budget = manifest.section("precision_auto")["max_accuracy_drop_pts"]
        click.echo(f"  --precision auto chose {manifest.precision} (budget {budget:g} pts)")
        measured_on = manifest.section("precision_auto").get("measured_on")
        if measured_on:
            click.echo(f"  timed on {measured_on}")
    click.echo(
        f"  {manifest.target_name} / {manifest.backend} / {manifest.precision}, "
        f"{len(manifest.classes)} classes, input {manifest.input.shape}"
    )
    click.echo(f"  vs FP32 {accuracy_line(manifest)}")
    for name, row in manifest.section("accuracy").get("models", {}).items():
        click.echo(f"  top-1 {name}: {with_interval(row['top1'], row.get('top1_ci95'))}")
    if manifest.has("pruning"):
        from edgekit.cli.prune_cmd import summary_lines

        click.echo("  pruning:")
        for line in summary_lines(manifest.section("pruning")):
            click.echo(f"    {line}")
    kept = manifest.section("quantization").get("keep_fp32")
    if kept:
        click.echo(f"  kept in FP32 to meet the accuracy rules: {', '.join(kept)}")
    for key, value in guard_rows(manifest).items():
        click.echo(f"  {key}: {value}")
    for key, value in get_backend(manifest.backend).describe(config.out, manifest).items():
        click.echo(f"  {key}: {value}")
