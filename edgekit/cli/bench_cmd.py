"""`edgekit bench`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import (
    backend_option_values,
    backend_options,
    classes_option,
    iterations_option,
    json_option,
    parse_int_list,
    print_json,
    quiet_option,
    threads_option,
    trust_pickle_option,
)


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--reference",
    type=click.Path(path_type=Path, dir_okay=False),
    help="FP32 checkpoint (or ONNX) to compare with (default: the bundle's source, if unchanged).",
)
@click.option(
    "--no-reference",
    is_flag=True,
    help="Do not look for or time an FP32 reference (a bench on a device: the reference is the workstation's).",
)
@click.option(
    "--val",
    type=click.Path(path_type=Path, file_okay=False),
    help="Labelled image folder (one sub-directory per class).",
)
@click.option("--batch-sizes", default="1,8", show_default=True, help="Comma-separated batch sizes to time.")
@iterations_option
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed runs first.")
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False),
    help="Encoded images (your camera's or photos' sizes) for the end-to-end timing; default: --val's.",
)
@click.option("--throughput", is_flag=True, help="Also images/s from the files, decoding overlapped with the network.")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Evaluate at most this many --val images.")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where bench.json and bench.md go (default: BUNDLE.bench).",
)
@click.option("--device", default=None, help="Run on this device over SSH (`edgekit devices`); results come back here.")
@classes_option
@threads_option
@trust_pickle_option
@backend_options("run")
@quiet_option
@json_option
def bench(
    bundle: Path,
    reference: Path | None,
    no_reference: bool,
    val: Path | None,
    batch_sizes: str,
    iterations: int,
    warmup: int,
    images: Path | None,
    throughput: bool,
    max_images: int | None,
    out: Path | None,
    device: str | None,
    classes: Path | None,
    threads: int | None,
    trust_pickle: bool,
    quiet: bool,
    as_json: bool,
    **run_options: Any,
) -> None:
    """Time BUNDLE against its FP32 PyTorch reference in the same run, and measure accuracy.

    Reports p50/p90/p99/mean latency and images/s per batch size, top-1 accuracy and top-1
    agreement with the reference on --val, and the machine it ran on.
    """
    from edgekit.core.progress import Progress
    from edgekit.data.classes import read_class_file
    from edgekit.pipeline.bench import BenchConfig, run_bench

    config = BenchConfig(
        bundle=bundle,
        reference=reference,
        find_reference=not no_reference,
        val=val,
        batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"),
        warmup=warmup,
        iterations=iterations,
        threads=threads,
        max_images=max_images,
        images=images,
        throughput=throughput,
        trust_pickle=trust_pickle,
        out=out,
        class_names=tuple(read_class_file(classes)) if classes else None,
        run_options=backend_option_values(run_options, "run"),
    )
    progress = Progress(enabled=not quiet)
    if device is not None:
        from edgekit.remote.bench import bench_on_device
        from edgekit.remote.devices import get_device

        results = bench_on_device(get_device(device), config, progress.note)
    else:
        results = run_bench(config, progress)
    if as_json:
        print_json(results)
        return
    click.echo((config.results_dir() / "bench.md").read_text(encoding="utf-8"), nl=False)
    click.echo(f"\nresults: {config.results_dir() / 'bench.json'}")
