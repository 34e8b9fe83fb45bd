"""`edgekit export triton|deepstream` and `edgekit serve`: a bundle in Triton Inference Server or DeepStream
(edgekit/serve/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import force_option, json_option, print_json, quiet_option, threads_option

bundle_argument = click.argument("bundle", type=click.Path(path_type=Path, file_okay=False, exists=True))
out_option = click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="The folder to write (refused if it exists)."
)


def _triton_options(function: Any) -> Any:
    for decorator in reversed(
        (
            click.option(
                "--name", default=None, help="The model's name in Triton (default: the bundle folder's name)."
            ),
            click.option(
                "--max-batch-size",
                type=click.IntRange(1, 1024),
                default=8,
                show_default=True,
                help="The largest batch Triton's dynamic batcher forms from concurrent requests.",
            ),
            click.option(
                "--max-queue-delay-us",
                type=click.IntRange(0, 10_000_000),
                default=2000,
                show_default=True,
                help="How long (µs) the batcher holds a request to fill a batch.",
            ),
            click.option(
                "--instances",
                type=click.IntRange(1, 64),
                default=1,
                show_default=True,
                help="Model instances Triton runs side by side (each with --threads threads).",
            ),
            click.option(
                "--max-image-bytes",
                type=click.IntRange(1, 2**31 - 1),
                default=32 * 1024 * 1024,
                show_default=True,
                help="A request whose image is larger is refused with HTTP 400 (gRPC INVALID_ARGUMENT).",
            ),
            threads_option,
        )
    ):
        function = decorator(function)
    return function


def _settings(options: dict[str, Any]) -> Any:
    """The shared Triton options of a command's parameters, as the library's settings."""
    from edgekit.serve.triton_repository import TritonSettings

    fields = ("name", "max_batch_size", "max_queue_delay_us", "instances", "threads", "max_image_bytes")
    return TritonSettings(**{field: options[field] for field in fields})


@click.group("export")
def export_group() -> None:
    """Write a bundle in the form another serving system loads: a Triton model repository, or a DeepStream
    nvinfer config."""


@export_group.command("triton")
@bundle_argument
@out_option
@_triton_options
@force_option
@json_option
def export_triton_command(
    bundle: Path,
    out: Path,
    name: str | None,
    max_batch_size: int,
    max_queue_delay_us: int,
    instances: int,
    max_image_bytes: int,
    threads: int | None,
    force: bool,
    as_json: bool,
) -> None:
    """Write BUNDLE as a Triton Inference Server model repository at --out.

    NAME takes encoded images (UINT8 IMAGE) and answers with the model's output: an ensemble of
    NAME_preprocess (edgekit's decode and transform, Python backend) and NAME_model (Triton's own backend for
    the model file: ONNX Runtime, OpenVINO, or TensorRT's plan when exported on the device that built it).
    NAME_edgekit serves the bundle through edgekit's runtime (any bundle, LiteRT included). Where Triton has
    no backend for the model file, NAME is that model.
    """
    from edgekit.core.install import require_workstation

    require_workstation("export triton")
    from edgekit.serve.triton_repository import export_triton

    result = export_triton(bundle, out, _settings(locals()), force)
    if as_json:
        print_json(result.to_dict())
        return
    click.echo(f"wrote {out}: send images to model {result.entry!r}")
    for model, what in result.models.items():
        click.echo(f"  {model}: {what}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"run it: tritonserver --model-repository {out.resolve()} (docs/serving.md)")


@export_group.command("deepstream")
@bundle_argument
@out_option
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Images like your camera's: nvinfer's scaling is emulated on them and compared with edgekit's "
    "(up to 500). Without them the difference is not measured, and the output says so.",
)
@click.option(
    "--deepstream",
    "version",
    type=click.Choice(("6.0", "6.1", "6.2", "6.3", "6.4", "7.0", "7.1")),
    default="7.1",
    show_default=True,
    help="The DeepStream release whose nvinfer keys the config may use.",
)
@click.option(
    "--gie",
    type=click.Choice(("primary", "secondary")),
    default="primary",
    show_default=True,
    help="primary: classify whole frames; secondary: classify the objects a detector found.",
)
@click.option("--gie-unique-id", type=click.IntRange(1, 1_000_000), default=1, show_default=True, help="This GIE's id.")
@click.option(
    "--operate-on-gie-id",
    type=click.IntRange(1, 1_000_000),
    default=1,
    show_default=True,
    help="With --gie secondary: the detector GIE whose objects this one classifies.",
)
@click.option("--batch-size", type=click.IntRange(1, 256), default=1, show_default=True, help="nvinfer's batch-size.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="classifier-threshold: below this probability nvinfer attaches no label.",
)
@force_option
@quiet_option
@json_option
def export_deepstream_command(
    bundle: Path,
    out: Path,
    images: Path | None,
    version: str,
    gie: str,
    gie_unique_id: int,
    operate_on_gie_id: int,
    batch_size: int,
    threshold: float,
    force: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Write BUNDLE as a DeepStream nvinfer classifier at --out: config_infer_<gie>.txt, model.onnx (float
    pixels 0..255 in, normalised inside, so net-scale-factor=1 and offsets=0), labels.txt and deepstream.json.

    nvinfer scales whole frames (or objects) where torchvision resizes and crops: with --images the two are
    compared, and the scaling that agrees more often with edgekit's is written.
    """
    from edgekit.core.install import require_workstation

    require_workstation("export deepstream")
    from edgekit.core.progress import Progress
    from edgekit.serve.deepstream import DeepStreamSettings, export_deepstream

    settings = DeepStreamSettings(version, gie, gie_unique_id, operate_on_gie_id, batch_size, threshold)
    record = export_deepstream(bundle, out, settings, images, force, Progress(enabled=not quiet and not as_json))
    if as_json:
        print_json({"out": str(out), **{k: v for k, v in record.items() if k != "kind"}})
        return
    click.echo(f"wrote {out}: {record['config']} for DeepStream {version} (nvinfer {gie} classifier)")
    measured = record["agreement_with_edgekit"]
    if measured is None:
        click.echo("note: nvinfer's scaling was not compared with edgekit's; give --images to measure it", err=True)
        return
    for mode, figures in measured.items():
        low, high = figures["ci95"]
        chosen = " (written)" if mode == record["scaling"] else ""
        click.echo(
            f"  nvinfer {mode.replace('_', ' ')}: top-1 agreement with edgekit {figures['agreement']:.2%} "
            f"({low:.1%}–{high:.1%}, {figures['n']} images){chosen}"
        )
    if measured[record["scaling"]]["agreement"] < 0.99:
        click.echo(
            "warning: nvinfer's scaling changes predictions against edgekit's resize-and-crop on these images; "
            "crop the frame to the region the model was trained on (an ROI, or nvdspreprocess) or fine-tune on "
            "frames scaled the way nvinfer scales them",
            err=True,
        )


@click.command("serve")
@bundle_argument
@_triton_options
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on; 0.0.0.0 serves the network (no authentication: put it behind your own).",
)
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="HTTP/REST port.")
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8001, show_default=True, help="gRPC port.")
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), default=8002, show_default=True, help="Prometheus metrics port."
)
@json_option
def serve_command(
    bundle: Path,
    name: str | None,
    max_batch_size: int,
    max_queue_delay_us: int,
    instances: int,
    max_image_bytes: int,
    threads: int | None,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    as_json: bool,
) -> None:
    """Serve BUNDLE with a real Triton Inference Server (the binary PyTriton ships) over HTTP and gRPC until
    Ctrl-C or SIGTERM.

    Clients send encoded images as UINT8 IMAGE and get PROBABILITIES (ask for class_count to get
    `score:index:label`); Triton's dynamic batcher groups concurrent requests. Health: /v2/health/ready;
    metrics: /metrics on --metrics-port.
    """
    from edgekit.serve.serve import serve
    from edgekit.serve.tritonserver import Endpoints

    def ready(info: dict[str, Any]) -> None:
        if as_json:
            print_json({"bundle": str(bundle), "status": "ready", **info})
            return
        click.echo(
            f"serving {bundle} as model {info['model']!r}: HTTP {info['http']}, gRPC {info['grpc']}, "
            f"metrics {info['metrics']} (Ctrl-C stops)"
        )

    settings = _settings(locals())
    ended = serve(bundle, Endpoints(host, http_port, grpc_port, metrics_port), settings, ready)
    if as_json:
        print_json({"bundle": str(bundle), "status": ended})
    else:
        click.echo(f"{ended}: the server shut down cleanly", err=True)
