"""`edgekit predict`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgekit.cli.options import (
    SomeInputsFailed,
    backend_option_values,
    backend_options,
    json_option,
    print_json,
    quiet_option,
    threads_option,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from edgekit.runtime.model import BundleModel
    from edgekit.runtime.stream import StreamOptions


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--top-k", "-k", type=click.IntRange(min=1), default=1, show_default=True, help="Classes to show per image."
)
@click.option("--backend", default=None, help="Run with another installed backend than the bundle's.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Images per call to the model (decoding of the next batch overlaps it).",
)
@click.option(
    "--every", type=click.IntRange(min=1), default=1, show_default=True, help="Video: predict every Nth frame."
)
@click.option(
    "--frame-budget",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Video, live: drop frames (oldest first) that waited longer than this many ms; a file is then paced "
    "by its timestamps like a camera.",
)
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Video: stop after this many frames.")
@click.option("--device", default=None, help="Predict on this device over SSH (`edgekit devices`).")
@threads_option
@backend_options("run")
@quiet_option
@json_option
def predict(
    bundle: Path,
    images: tuple[Path, ...],
    top_k: int,
    backend: str | None,
    batch_size: int,
    every: int,
    frame_budget: float | None,
    max_frames: int | None,
    device: str | None,
    threads: int | None,
    quiet: bool,
    as_json: bool,
    **run_options: Any,
) -> None:
    """Classify IMAGES (files or directories, searched recursively) with BUNDLE.

    An image that cannot be read is reported on its own line (in --json a record of type "error")
    and does not stop the others; the exit status is then 3. IMAGES may instead be one video: a file,
    a camera (/dev/video0), an RTSP/HTTP URL or, on a Jetson, "gst:" and a GStreamer pipeline ending in
    an appsink; one line per frame (--json: one record per frame, the last one a summary), fps and
    latency percentiles at the end. Ctrl-C stops it cleanly.
    """
    import edgekit
    from edgekit.core.errors import EdgekitError
    from edgekit.core.progress import Progress
    from edgekit.data.images import collect_images
    from edgekit.runtime.stream import StreamOptions, is_stream

    given = {name: value for name, value in backend_option_values(run_options, "run").items() if value is not None}
    streams = [str(source) for source in images if is_stream(str(source))]
    if device is not None:
        if streams:
            raise EdgekitError("--device predicts image files; for a camera or stream on the board, run predict there")
        predictions = _predict_on_device(device, bundle, collect_images(images), top_k, batch_size, threads, quiet)
        _show(predictions, as_json)
        return
    if streams:
        if len(images) != 1:
            raise EdgekitError("predict takes one video source at a time (or image files and folders, not both)")
        options = StreamOptions(every=every, frame_budget_ms=frame_budget, max_frames=max_frames)
        model = edgekit.load(bundle, backend=backend, threads=threads, **given)
        _predict_stream(model, streams[0], options, top_k, as_json)
        return
    files = collect_images(images)
    if not files:
        raise EdgekitError(f"no image files found in {', '.join(map(str, images))}")
    model = edgekit.load(bundle, backend=backend, threads=threads, **given)
    progress = Progress(enabled=not quiet)
    predicted = progress.bar(model.iter_predict(files, top_k, batch_size), "predicting", len(files), "img")
    _show((p.to_dict() for p in predicted), as_json)


def _show(predictions: Iterable[dict[str, Any]], as_json: bool) -> None:
    """Each prediction as it comes (a line, or a JSON record), then the summary; some unreadable: exit 3."""
    from edgekit.core.errors import EdgekitError

    total = failed = 0
    for p in predictions:
        total += 1
        failed += "error" in p
        if as_json:
            print_json(p, "error" if "error" in p else "prediction")
        elif "error" in p:
            click.echo(f"{p['file']}\terror: {p['error']}")
        else:
            click.echo(f"{p['file']}\t" + "\t".join(f"{row['label']} {row['prob']:.3f}" for row in p["top_k"]))
    if as_json:
        print_json({"images": total, "predicted": total - failed, "failed": failed}, "summary")
    if total and failed == total:
        raise EdgekitError(f"none of the {failed} image file(s) could be read")
    if failed:
        raise SomeInputsFailed(f"{failed} of {total} image file(s) could not be read (listed above); the others "
                               "were predicted")  # fmt: skip


def _predict_on_device(
    name: str, bundle: Path, files: list[Path], top_k: int, batch_size: int, threads: int | None, quiet: bool
) -> list[dict[str, Any]]:
    from edgekit.core.errors import EdgekitError
    from edgekit.core.progress import Progress
    from edgekit.remote.devices import get_device
    from edgekit.remote.predict import predict_on_device

    if not files:
        raise EdgekitError("no image files found to send to the device")
    return predict_on_device(get_device(name), bundle, files, top_k, batch_size, threads, Progress(not quiet).note)


def _predict_stream(model: BundleModel, source: str, options: StreamOptions, top_k: int, as_json: bool) -> None:
    import signal

    from edgekit.runtime.stream import StreamStats, predict_stream

    stats = StreamStats()
    try:
        for record in predict_stream(model, source, options, top_k, stats):
            if as_json:
                print_json(record, "frame")
            else:
                when = "" if record["time_s"] is None else f" ({record['time_s']:.2f} s)"
                ranked = "\t".join(f"{row['label']} {row['prob']:.3f}" for row in record["top_k"])
                click.echo(f"frame {record['frame']}{when}\t{ranked}\t{record['latency_ms']:.1f} ms")
    except KeyboardInterrupt as exc:  # Ctrl-C (or SIGTERM) is how a camera stream is stopped: a clean end
        signum = getattr(exc, "signum", None)  # cli.main's Terminated carries the signal
        stats.stopped_by = "Ctrl-C" if signum is None else signal.Signals(signum).name
    summary = stats.to_dict()
    if as_json:
        print_json(summary, "summary")
    shown = [f"p{q} {summary[f'latency_p{q}_ms']:.1f}" for q in (50, 90, 99) if summary[f"latency_p{q}_ms"] is not None]
    latency = f", latency {' / '.join(shown)} ms" if shown else ""
    click.echo(
        f"{source}: {summary['frames_predicted']} of {summary['frames_read']} frames predicted "
        f"({summary['frames_dropped']} dropped), {summary['fps']:.1f} fps{latency}; stopped by {summary['stopped_by']}",
        err=True,
    )
