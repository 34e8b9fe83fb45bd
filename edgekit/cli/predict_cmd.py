"""`edgekit predict`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import cuda_graph_option, json_option, print_json, threads_option, trust_engine_option


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--top-k", "-k", type=click.IntRange(min=1), default=1, show_default=True, help="Classes to show per image."
)
@click.option("--backend", default=None, help="Run with another installed backend than the bundle's.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@threads_option
@trust_engine_option
@cuda_graph_option
@json_option
def predict(
    bundle: Path,
    images: tuple[Path, ...],
    top_k: int,
    backend: str | None,
    batch_size: int,
    threads: int | None,
    trust_engine_host_code: bool,
    cuda_graph: bool,
    as_json: bool,
) -> None:
    """Classify IMAGES (files or directories, searched recursively) with BUNDLE.

    An image that cannot be read is reported on its own line (or with an `error` key in --json)
    and does not stop the others.
    """
    import edgekit
    from edgekit.core.errors import EdgekitError
    from edgekit.core.progress import Progress
    from edgekit.data.images import collect_images

    files = collect_images(images)
    if not files:
        raise EdgekitError(f"no image files found in {', '.join(map(str, images))}")
    model = edgekit.load(
        bundle, backend=backend, threads=threads, trust_engine_host_code=trust_engine_host_code, cuda_graph=cuda_graph
    )
    progress = Progress(enabled=True)
    predictions = list(progress.bar(model.iter_predict(files, top_k, batch_size), "predicting", len(files), "img"))
    if as_json:
        print_json([p.to_dict() for p in predictions])
    else:
        for p in predictions:
            if p.error is not None:
                click.echo(f"{p.file}\terror: {p.error}")
            else:
                click.echo(f"{p.file}\t" + "\t".join(f"{label} {prob:.3f}" for _, label, prob in p.top_k))
    failed = sum(p.error is not None for p in predictions)
    if failed == len(predictions):
        raise EdgekitError(f"none of the {failed} image file(s) could be read")
    if failed:
        click.echo(f"warning: {failed} of {len(predictions)} file(s) could not be read", err=True)
