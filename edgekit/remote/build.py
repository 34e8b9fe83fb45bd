"""`edgekit build --device NAME`: the engine is built on the board (TensorRT engines belong to one GPU and one
TensorRT release), and the bundle with its engine comes back into the workstation's folder.

The device builds on a copy of the cached bundle (`DeviceSession.run_on_copy`) and sends the copy back.
Nothing from the device is trusted on its word: the returned bundle must verify (every file against its
own manifest), and every file the workstation's bundle had must come back byte for byte, so the device
can only add (the engine and its record). The local bundle is then replaced as `edgekit build` replaces
it on the device: staged beside it and swapped in, so a failure leaves it as it was.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgekit.core.errors import BundleError, EdgekitError
from edgekit.core.json_lines import parse_one
from edgekit.remote.devices import Device
from edgekit.remote.session import DeviceSession
from edgekit.runtime.bundle import read_manifest, read_verified, staged_directory, write_manifest

# `edgekit build`'s engine options as its command line spells them (None: not given, the bundle's choice).
ENGINE_FLAGS = {
    "dla_core": "--dla-core",
    "opt_level": "--opt-level",
    "hardware_compatibility": "--hardware-compatibility",
}
ENGINE_SWITCHES = {
    "gpu_fallback": ("--gpu-fallback", "--no-gpu-fallback"),
    "sparse": ("--sparse", "--no-sparse"),
    "version_compatible": ("--version-compatible", None),
}
MAX_RETURNED_BYTES = 8 << 30  # a bundle with its engines; more than this is not a bundle


def engine_flags(options: Mapping[str, Any]) -> list[str]:
    """The options given (not None) as `edgekit build` flags."""
    flags: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        if name in ENGINE_FLAGS:
            flags += [ENGINE_FLAGS[name], str(value)]
        elif name in ENGINE_SWITCHES:
            on, off = ENGINE_SWITCHES[name]
            flag = on if value else off
            if flag is not None:
                flags.append(flag)
        else:
            raise ValueError(f"unknown engine option {name!r}")
    return flags


def build_on_remote(
    device: Device,
    bundle: Path,
    options: Mapping[str, Any],
    images: Path | None = None,
    verbose: bool = False,
    on_line: Callable[[str], None] | None = None,
    session: DeviceSession | None = None,
) -> dict[str, Any]:
    """Build the bundle's engine on the device and bring it back into `bundle`; the engine's record, with
    the device it was built on."""
    original = read_manifest(bundle, verify=True)  # a bundle that does not verify here is not sent
    session = session or DeviceSession(device, on_line)
    session.check_version()
    remote = session.push(bundle, "bundles")
    args = ["build", "{bundle}", "--json", *engine_flags(options), *(["--verbose"] if verbose else [])]
    if images is not None:
        args += ["--val", session.push(images, "images")]
    returned = session.run_on_copy(remote, args)
    with tempfile.TemporaryDirectory(prefix=f".{bundle.name}.from-{device.name}-", dir=bundle.parent) as work:
        unpacked = Path(work)
        _unpack(returned, unpacked, device)
        try:
            record = parse_one((unpacked / "stdout").read_text())
            built = read_manifest(unpacked / "bundle", verify=True)
        except (OSError, ValueError, BundleError) as exc:
            problem = f"the bundle {device.name} sent back does not verify ({exc}); nothing was changed"
            raise EdgekitError(problem) from None
        changed = [name for name, digest in original.files.items() if built.files.get(name) != digest]
        if changed:
            raise EdgekitError(
                f"{device.name} sent back a bundle whose files differ from yours ({', '.join(sorted(changed))}); "
                "nothing was changed: check the device's edgekit"
            )
        with staged_directory(bundle, force=True) as stage:
            for name in built.files:  # only what the returned manifest lists, as the bytes just verified
                (stage / name).parent.mkdir(parents=True, exist_ok=True)
                (stage / name).write_bytes(read_verified(unpacked / "bundle", built, name))
            write_manifest(stage, built.to_dict())
    record["built_on"] = {"device": device.name, "url": device.url, "facts": device.facts}
    return record


def _unpack(data: bytes, into: Path, device: Device) -> None:
    """Regular files and folders only, each inside `into` (a device's tar is not trusted to be tidy)."""
    if len(data) > MAX_RETURNED_BYTES:
        raise EdgekitError(f"{device.name} sent back {len(data)} bytes, more than a bundle; nothing was changed")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                name = posixpath.normpath(member.name)
                if name == ".":
                    continue
                if name.startswith(("/", "../")) or name == ".." or "\\" in name or "\0" in name:
                    raise EdgekitError(f"{device.name} sent back a file outside the bundle ({member.name!r})")
                target = into / name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = archive.extractfile(member)
                    assert source is not None
                    target.write_bytes(source.read())
                else:
                    raise EdgekitError(f"{device.name} sent back {member.name!r}, which is not a regular file")
    except tarfile.TarError as exc:
        raise EdgekitError(f"{device.name} sent back no readable bundle ({exc}); nothing was changed") from None
