"""Device targets as data: one TOML file per device under `targets/`.

A target says, per precision it runs well, which backends can run the model there (in order of
preference, fastest first, as measured by `benchmarks/cpu_backends.py`), how many threads to use,
the highest ONNX opset its runtimes read, and the batch sizes to prepare for. Unknown keys are
rejected so a typo in a target file fails at load time, not after a long build.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from importlib import resources
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PRECISIONS = ("fp32", "fp16", "int8")
TARGETS_DIR_ENV = "EDGEKIT_TARGETS_DIR"


@dataclasses.dataclass(frozen=True)
class BatchProfile:
    min: int
    opt: int
    max: int


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    description: str
    kind: str  # "cpu" or "gpu"
    arch: str  # machine architecture of the device: "x86_64" or "aarch64"
    backends: dict[str, tuple[str, ...]]  # precision → backends in preference order, fastest first
    threads: int  # 0 = all cores of the machine it runs on
    onnx_opset: int
    batch: BatchProfile
    source: str  # file it was loaded from

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.backends)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "backends": {k: list(v) for k, v in self.backends.items()}}


_REQUIRED = {
    "name": str,
    "description": str,
    "kind": str,
    "arch": str,
    "backends": dict,
    "threads": int,
    "onnx_opset": int,
    "batch": dict,
}


def _targets_dir() -> Path:
    override = os.environ.get(TARGETS_DIR_ENV)
    if override:
        return Path(override)
    return Path(str(resources.files("edgekit._targets")))


def _parse(data: dict[str, Any], source: str) -> Target:
    unknown = sorted(set(data) - set(_REQUIRED))
    if unknown:
        raise EdgekitError(
            f"target file {source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_REQUIRED)}"
        )
    missing = sorted(set(_REQUIRED) - set(data))
    if missing:
        raise EdgekitError(f"target file {source}: missing key(s) {', '.join(missing)}")
    for key, kind in _REQUIRED.items():
        if not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool)):
            raise EdgekitError(f"target file {source}: '{key}' must be a {kind.__name__}")
    if data["kind"] not in ("cpu", "gpu"):
        raise EdgekitError(f"target file {source}: kind must be 'cpu' or 'gpu', not {data['kind']!r}")
    backends = data["backends"]
    if not backends or any(p not in PRECISIONS for p in backends):
        raise EdgekitError(
            f"target file {source}: backends must be a table keyed by precision ({', '.join(PRECISIONS)})"
        )
    if not all(isinstance(v, list) and v and all(isinstance(b, str) for b in v) for v in backends.values()):
        raise EdgekitError(f"target file {source}: each backends entry must be a non-empty list of backend names")
    batch = data["batch"]
    if set(batch) != {"min", "opt", "max"} or not all(isinstance(v, int) for v in batch.values()):
        raise EdgekitError(f"target file {source}: batch must have integer min, opt and max")
    if not 1 <= batch["min"] <= batch["opt"] <= batch["max"]:
        raise EdgekitError(f"target file {source}: batch must satisfy 1 <= min <= opt <= max")
    if data["threads"] < 0 or not 7 <= data["onnx_opset"] <= 23:
        raise EdgekitError(f"target file {source}: threads must be >= 0 and onnx_opset within 7..23")
    return Target(
        name=data["name"],
        description=data["description"],
        kind=data["kind"],
        arch=data["arch"],
        backends={precision: tuple(names) for precision, names in backends.items()},
        threads=data["threads"],
        onnx_opset=data["onnx_opset"],
        batch=BatchProfile(**batch),
        source=source,
    )


def load_target_file(path: Path) -> Target:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EdgekitError(f"cannot read target file {path}: {exc}") from None
    target = _parse(data, str(path))
    if target.name != path.stem:
        raise EdgekitError(f"target file {path}: name {target.name!r} must match the file name {path.stem!r}")
    return target


def list_targets() -> list[Target]:
    return [load_target_file(p) for p in sorted(_targets_dir().glob("*.toml"))]


def get_target(name_or_path: str) -> Target:
    """A target by name (`x86-cpu`) or by the path of a TOML file of the user's own."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise EdgekitError(f"target file {path} does not exist")
        return load_target_file(path)
    path = _targets_dir() / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(t.stem for t in sorted(_targets_dir().glob("*.toml")))
        raise EdgekitError(f"unknown target {name_or_path!r}; known targets: {known} (see `edgekit targets`)")
    return load_target_file(path)


_HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def host_arch() -> str | None:
    """This machine's architecture as target files spell it; None where no target file describes it."""
    return _HOST_ARCH.get(platform.machine().lower())


def host_target_name() -> str:
    """The target that describes the machine edgekit runs on.

    GPU targets are only chosen where TensorRT can run; until the TensorRT backend exists every
    host is one of the CPU targets.
    """
    arch = host_arch()
    if arch == "x86_64":
        return "x86-cpu"
    if arch == "aarch64":
        return "arm-cpu"
    raise EdgekitError(
        f"no default target for a {platform.machine().lower()} host; pass --target (see `edgekit targets`)"
    )
