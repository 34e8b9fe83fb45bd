"""Devices as data: the boards a workstation reaches over SSH, kept in a TOML file.

The file is per user (`$XDG_CONFIG_HOME/edgekit/devices.toml`), overridden per project by an
`edgekit-devices.toml` in the current directory, or by `EDGEKIT_DEVICES=PATH`. It holds no secrets:
authentication is the user's OpenSSH setup (keys, agent, `~/.ssh/config`, jump hosts). Each device:

    [devices.orin]
    url = "ssh://nvidia@192.168.1.20:22"
    edgekit = "/home/nvidia/.local/bin/edgekit"   # the command on the device (default: edgekit on its PATH)
    ssh_config = "/home/me/.ssh/lab_config"        # optional: ssh -F for this device
    cache = "/data/edgekit-cache"                  # optional: where bundles go (default ~/.cache/edgekit)
    threads = 4                                    # optional: --threads for commands run there
    [devices.orin.facts]                           # written by `edgekit devices check`
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    import tomllib  # novermin (guarded: tomli below on Python < 3.11)
except ImportError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from edgekit.core.errors import EdgekitError
from edgekit.core.files import write_text_atomic

DEVICES_ENV = "EDGEKIT_DEVICES"
PROJECT_FILE = "edgekit-devices.toml"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$|^\[[0-9A-Fa-f:.]+\]$")
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    url: str  # ssh://[user@]host[:port]
    edgekit: str = "edgekit"
    ssh_config: str | None = None
    cache: str | None = None
    threads: int | None = None
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def user(self) -> str | None:
        return urllib.parse.urlsplit(self.url).username

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int | None:
        return urllib.parse.urlsplit(self.url).port

    def with_facts(self, facts: dict[str, Any]) -> Device:
        return dataclasses.replace(self, facts=dict(facts))

    def describe(self) -> str:
        return f"{self.name} ({self.url})"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, {})}


def check_url(url: str) -> str:
    """An ssh:// URL whose parts are plain names (nothing an ssh command line could read as an option)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EdgekitError(f"{url!r} is not an ssh://user@host[:port] URL ({exc})") from None
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EdgekitError(f"{url!r} is not an ssh://user@host[:port] URL (e.g. ssh://nvidia@192.168.1.20)")
    if parts.password is not None:
        raise EdgekitError("edgekit stores no passwords: give ssh://user@host and use a key (ssh-copy-id)")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if not HOST.match(host) or (parts.username is not None and not USER.match(parts.username)):
        raise EdgekitError(f"{url!r}: the user and host must be plain names or addresses")
    if port is not None and not 0 < port < 65536:
        raise EdgekitError(f"{url!r}: the port must be between 1 and 65535")
    return url


def devices_file() -> Path:
    """Where the devices are: $EDGEKIT_DEVICES, else ./edgekit-devices.toml when present, else the user's."""
    if os.environ.get(DEVICES_ENV):
        return Path(os.environ[DEVICES_ENV])
    if Path(PROJECT_FILE).is_file():
        return Path(PROJECT_FILE)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "edgekit" / "devices.toml"


def load_devices(path: Path | None = None) -> dict[str, Device]:
    path = path or devices_file()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EdgekitError(f"cannot read the devices file {path}: {exc}; fix or remove it") from None
    devices = {}
    for name, entry in (data.get("devices") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) or not NAME.match(name):
            raise EdgekitError(f"{path}: device {name!r} needs a name of letters, digits, - or _ and a url")
        fields = {k: entry[k] for k in ("edgekit", "ssh_config", "cache", "threads", "facts") if k in entry}
        devices[name] = Device(name=name, url=check_url(entry["url"]), **fields)
    return devices


def get_device(name: str, path: Path | None = None) -> Device:
    devices = load_devices(path)
    if name not in devices:
        known = ", ".join(sorted(devices)) or "none yet"
        if re.fullmatch(r"cpu|cuda(:\d+)?|gpu\d*", name):  # a PyTorch device where a board was expected
            raise EdgekitError(
                f"--device names a board over SSH (`edgekit devices`), and {name!r} is not one (known: {known}); "
                f"to train on it give --accelerator {name if name.startswith(('cpu', 'cuda')) else 'cuda'}"
            )
        raise EdgekitError(
            f"no device named {name!r} in {path or devices_file()} (known: {known}); add it with "
            f"`edgekit devices add {name} ssh://user@host`"
        )
    return devices[name]


def get_devices(names: Sequence[str], target: str | None) -> tuple[list[Device], str | None]:
    """The named devices (each once, in order) and the target to build for: `target`, else the one
    `edgekit devices check` recorded for them (they must agree); None when nothing says."""
    devices = [get_device(name) for name in dict.fromkeys(names)]
    if target is not None or not devices:
        return devices, target
    recorded = {d.facts.get("target") for d in devices} - {None, "unknown"}
    if len(recorded) > 1:
        raise EdgekitError(
            f"the devices are different targets ({', '.join(sorted(recorded))}): give --target, or one kind of device"
        )
    return devices, (recorded.pop() if recorded else None)


def save_devices(devices: dict[str, Device], path: Path | None = None) -> Path:
    """Write the file (atomically): TOML strings are written as JSON strings, which TOML reads the same."""
    path = path or devices_file()
    lines = ["# edgekit devices (`edgekit devices add/list/check/remove`); no secrets: SSH keys do the rest", ""]
    for device in sorted(devices.values(), key=lambda d: d.name):
        lines.append(f"[devices.{device.name}]")
        for key in ("url", "edgekit", "ssh_config", "cache", "threads"):
            value = getattr(device, key)
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        if device.facts:
            lines.append(f"[devices.{device.name}.facts]")
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in sorted(device.facts.items()) if v is not None]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(lines))
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)
