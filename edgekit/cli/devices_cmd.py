"""`edgekit devices`: the boards this workstation benchmarks on over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import (
    force_option,
    json_option,
    new_or_old_name,
    print_json,
    renamed_option,
    threads_option,
)


@click.group("devices")
def devices_group() -> None:
    """Boards reached over SSH (your OpenSSH keys and config; host keys must be known).

    Stored in ~/.config/edgekit/devices.toml, or ./edgekit-devices.toml for a project, or $EDGEKIT_DEVICES.
    Then: `edgekit bench BUNDLE --device NAME`, `edgekit sweep MODEL ... --device A --device B`.
    """


@devices_group.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--edgekit", "edgekit_command", default="edgekit", show_default=True,
              help="The edgekit command on the device (a path if it is not on the SSH session's PATH).")  # fmt: skip
@click.option("--ssh-config", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="An ssh_config file for this device (ssh -F).")  # fmt: skip
@click.option(
    "--cache-dir",
    "cache",
    default=None,
    callback=new_or_old_name(),
    help="Where bundles go on the device (default ~/.cache/edgekit).",
)
@renamed_option("--cache", "--cache-dir", "cache")
@threads_option
@force_option
def add(
    name: str, url: str, edgekit_command: str, ssh_config: Path | None, cache: str | None, threads: int | None,
    force: bool,
) -> None:  # fmt: skip
    """Add device NAME at URL (ssh://user@host[:port]). Nothing is contacted: `edgekit devices check NAME` does."""
    from edgekit.core.errors import EdgekitError
    from edgekit.remote.devices import NAME, Device, check_url, devices_file, load_devices, save_devices

    if not NAME.match(name):
        raise EdgekitError(f"device name {name!r}: use letters, digits, - and _ (e.g. orin-nano-1)")
    devices = load_devices()
    if name in devices and not force:
        raise EdgekitError(f"a device named {name} exists ({devices[name].url}); pass --force to replace it")
    config = str(ssh_config.resolve()) if ssh_config else None
    devices[name] = Device(name, check_url(url), edgekit_command, config, cache, threads)
    path = save_devices(devices)
    click.echo(f"added {name} ({url}) to {path or devices_file()}; check it with `edgekit devices check {name}`")


@devices_group.command("list")
@json_option
def list_devices(as_json: bool) -> None:
    """The devices, with what `check` found on each."""
    from edgekit.remote.devices import devices_file, load_devices

    devices = load_devices()
    if as_json:
        print_json({"file": str(devices_file()), "devices": [d.to_dict() for d in devices.values()]})
        return
    if not devices:
        click.echo(f"no devices in {devices_file()}; add one with `edgekit devices add NAME ssh://user@host`")
    for device in devices.values():
        facts = device.facts
        seen = f"target {facts.get('target', '?')}, edgekit {facts.get('edgekit', '?')}" if facts else "not checked"
        click.echo(f"{device.name}\t{device.url}\t{seen}")


@devices_group.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Forget device NAME (nothing on the device is touched)."""
    from edgekit.remote.devices import get_device, load_devices, save_devices

    get_device(name)
    devices = load_devices()
    del devices[name]
    save_devices(devices)
    click.echo(f"removed {name}")


@devices_group.command("check")
@click.argument("names", nargs=-1)
@json_option
def check(names: tuple[str, ...], as_json: bool) -> None:
    """Reach NAMES (default: every device), run `edgekit doctor` there and record what each is."""
    from edgekit.core.errors import EdgekitError
    from edgekit.remote.devices import load_devices, save_devices
    from edgekit.remote.session import DeviceSession, device_facts

    devices = load_devices()
    for name in names:
        if name not in devices:
            raise EdgekitError(f"no device named {name!r} (known: {', '.join(sorted(devices)) or 'none'})")
    chosen = list(names) or sorted(devices)
    found: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name in chosen:
        try:
            found[name] = device_facts(DeviceSession(devices[name]).doctor())
        except EdgekitError as exc:
            problems[name] = str(exc)
            continue
        devices[name] = devices[name].with_facts(found[name])
    if found:
        save_devices(devices)
    if as_json:
        print_json({"devices": found, "problems": problems})
    else:
        for name, facts in found.items():
            click.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    if problems:
        raise EdgekitError("; ".join(f"{name}: {problem}" for name, problem in problems.items()))
