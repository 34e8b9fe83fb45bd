"""`edgekit build`: the TensorRT engine, built on the device from the bundle's ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import backend_option_values, backend_options, json_option, print_json, quiet_option
from edgekit.runtime.signing import SIGNATURE


@click.command("build")
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False, exists=True))
@backend_options("build")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where TensorRT timing caches live (default: ~/.cache/edgekit/tensorrt).",
)
@click.option(
    "--val",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Images to check the engine on against ONNX Runtime (default: synthetic inputs).",
)
@click.option(
    "--print-trtexec",
    is_flag=True,
    help="Print the trtexec command that builds the engine with NVIDIA's own tool (JetPack 4.6); build nothing.",
)
@click.option(
    "--tensorrt-version",
    default=None,
    metavar="VERSION",
    help="With --print-trtexec: the TensorRT version to write it for (default: the oldest the target admits).",
)
@click.option(
    "--device",
    default=None,
    help="Build on this device over SSH (`edgekit devices`) and bring the engine back into BUNDLE here.",
)
@click.option("--verbose", is_flag=True, help="TensorRT's INFO log during the build.")
@click.option(
    "--key",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Sign the built bundle with this Ed25519 private key (as `edgekit sign`): building changes the bundle, "
    "so a signature made before no longer holds.",
)
@quiet_option
@json_option
def build_command(
    bundle: Path,
    cache_dir: Path | None,
    val: Path | None,
    print_trtexec: bool,
    tensorrt_version: str | None,
    device: str | None,
    verbose: bool,
    key: Path | None,
    quiet: bool,
    as_json: bool,
    **opts: Any,
) -> None:
    """Build BUNDLE's TensorRT engine on this device and add it to the bundle.

    Run it on the Jetson or GPU machine itself, or from the workstation with --device NAME: engines are
    specific to the TensorRT version and the GPU. Without options it uses those recorded by `edgekit
    compile`; any option given replaces them.
    """
    from edgekit.core.errors import EdgekitError
    from edgekit.core.progress import Progress
    from edgekit.pipeline.device_build import DeviceBuildConfig, build_on_device, native_build_command

    config = DeviceBuildConfig(
        bundle=bundle,
        options=backend_option_values(opts, "build"),
        cache_dir=cache_dir,
        verbose=verbose,
        images=val,
    )
    if print_trtexec and device is not None:
        raise EdgekitError("--print-trtexec prints a command to run on the device; it does not go with --device")
    if tensorrt_version is not None and not print_trtexec:
        raise EdgekitError("--tensorrt-version goes with --print-trtexec (a build uses this machine's TensorRT)")
    if print_trtexec:
        command = native_build_command(config, tensorrt_version)
        if as_json:
            print_json({"trtexec": command})
        else:
            click.echo(command)
        return
    progress = Progress(enabled=not quiet)
    was_signed = (bundle / SIGNATURE).is_file()
    if device is not None:
        if cache_dir is not None:
            raise EdgekitError("--cache-dir names a folder here; with --device the device keeps its own timing cache")
        from edgekit.remote.build import build_on_remote
        from edgekit.remote.devices import get_device

        record = build_on_remote(get_device(device), bundle, config.options, val, verbose, progress.note)
    else:
        record = build_on_device(config, progress)
    record["signature"] = _sign_again(bundle, key, was_signed, progress)
    if as_json:
        print_json(record)
        return
    placement = record["placement"]
    click.echo(f"engine: {bundle / record['file']}" + (f" (built on {device})" if device else ""))
    click.echo(
        f"  TensorRT {record['tensorrt_version']}, {record['device']['name']} (sm_{record['device']['sm']}), "
        f"{record['precision']}, {placement['device']}"
        + (f" core {placement['dla_core']}" if placement["device"] == "DLA" else "")
    )
    parity = record["parity"]
    if parity["checked"]:
        click.echo(
            f"  vs ONNX Runtime on model.onnx: top-1 agreement {parity['top1_agreement']:.2%}, max abs diff "
            f"{parity['max_abs_diff']:.2e} ({parity['images']} {parity['inputs']} inputs)"
        )
    if placement.get("network_layers_on_gpu"):
        click.echo(f"  on the GPU instead of the DLA: {len(placement['network_layers_on_gpu'])} layers")


def _sign_again(bundle: Path, key: Path | None, was_signed: bool, progress: Any) -> dict[str, str] | None:
    """With --key, sign the built bundle; a signature made before the build was dropped with the old files."""
    from edgekit.runtime.trust import sign

    if key is None:
        if was_signed:
            progress.note("note: the build changed the bundle, so its signature was dropped; sign it again with "
                          "`edgekit sign BUNDLE --key KEY` (or build with --key)")  # fmt: skip
        return None
    signature = sign(bundle, key, None)
    return {"signer": signature.signer, "keyid": signature.keyid, "signed_at": signature.signed_at}
