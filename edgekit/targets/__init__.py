"""Device targets as data: one TOML file per device under `targets/`.

A target says, per precision it runs well, which backends can run the model there (in order of
preference, fastest first, as measured by `benchmarks/cpu_backends.py`), how many threads to use,
the highest ONNX opset its runtimes read, and the batch sizes to prepare for. A GPU target adds a
`[gpu]` table (`GpuSpec`): compute capability, DLA cores, memory, the TensorRT and CUDA versions
that exist for it. Unknown keys are rejected so a typo in a target file fails at load time, not
after a long build.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import platform
import re
from pathlib import Path
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.core.versions import sm_number, version_tuple

try:
    import tomllib  # novermin (guarded: tomli below on Python < 3.11)
except ModuleNotFoundError:  # Python 3.8 - 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PRECISIONS = ("fp32", "fp16", "int8")
TARGETS_DIR_ENV = "EDGEKIT_TARGETS_DIR"


@dataclasses.dataclass(frozen=True)
class BatchProfile:
    min: int
    opt: int
    max: int


@dataclasses.dataclass(frozen=True)
class VersionRange:
    """Versions `min` … `max`, where `max` is a prefix: max "11" admits 11.0 to 11.99.x."""

    min: str
    max: str | None = None

    def admits(self, version: str) -> bool:
        parts = version_tuple(version)
        if parts < version_tuple(self.min):
            return False
        return self.max is None or parts[: len(version_tuple(self.max))] <= version_tuple(self.max)

    def __str__(self) -> str:
        if self.max is None:
            return f"{self.min} or newer"
        return self.min if self.max == self.min else f"{self.min} … {self.max}.x"


@dataclasses.dataclass(frozen=True)
class GpuSpec:
    """What a GPU target's TensorRT build needs to know about the device."""

    compute_capability: str  # "8.7" → sm_87
    dla_cores: int  # deep-learning accelerators (Xavier, Orin NX/AGX); FP16/INT8 only
    memory_mb: int  # memory the GPU may use (shared with the CPU on Jetson); bounds the builder workspace
    tensorrt: VersionRange  # TensorRT versions this device can have
    cuda: VersionRange  # CUDA toolkits that can compile for it (CUDA 13 dropped sm_53/62/72)
    jetpack: str | None  # JetPack release(s), for Jetson modules

    @property
    def sm(self) -> int:
        return sm_number(self.compute_capability)

    @property
    def sparse_tensor_cores(self) -> bool:
        """2:4 structured sparsity is accelerated from Ampere (sm_80) on."""
        return self.sm >= 80

    @property
    def workspace_mb(self) -> int:
        """Builder workspace: a quarter of the device's memory, at most 4 GiB.

        On a Jetson the GPU shares memory with the CPU and the application, so the builder must not
        claim most of it; on big GPUs more than 4 GiB buys a classifier of this size nothing.
        """
        return min(self.memory_mb // 4, 4096)


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
    gpu: GpuSpec | None = None  # kind "gpu" only
    # A full-integer INT8 model's interface: float32 (a QUANTIZE op inside; callers pass what FP32 takes)
    # or int8 (callers quantize with the scale/zero point in the manifest, one op less on the board).
    int8_io: str = "float32"

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.backends)

    def to_dict(self) -> dict[str, Any]:
        record = {**dataclasses.asdict(self), "backends": {k: list(v) for k, v in self.backends.items()}}
        if self.gpu is None:
            record.pop("gpu")
        else:
            record["gpu"] = {
                **{k: v for k, v in record["gpu"].items() if v is not None},
                "tensorrt": {k: v for k, v in record["gpu"]["tensorrt"].items() if v is not None},
                "cuda": {k: v for k, v in record["gpu"]["cuda"].items() if v is not None},
                "sm": self.gpu.sm,
                "workspace_mb": self.gpu.workspace_mb,
                "sparse_tensor_cores": self.gpu.sparse_tensor_cores,
            }
        return record


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
_OPTIONAL = {"gpu": dict, "int8_io": str}
INT8_IO = ("float32", "int8")  # what a full-integer model (LiteRT) takes and returns
_GPU_REQUIRED = {
    "compute_capability": str,
    "dla_cores": int,
    "memory_mb": int,
    "tensorrt": dict,
    "cuda": dict,
}
_GPU_OPTIONAL = {"jetpack": str}


def _targets_dir() -> Path:
    override = os.environ.get(TARGETS_DIR_ENV)
    if override:
        return Path(override)
    import importlib.util

    # The shipped target files are the package edgekit._targets (importlib.resources.files is 3.9+).
    spec = importlib.util.find_spec("edgekit._targets")
    if spec is None or spec.origin is None:
        raise RuntimeError("edgekit is installed without its target files (edgekit._targets)")
    return Path(spec.origin).parent


def _check_keys(data: dict[str, Any], required: dict[str, type], optional: dict[str, type], where: str) -> None:
    allowed = {**required, **optional}
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise EdgekitError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    missing = sorted(set(required) - set(data))
    if missing:
        raise EdgekitError(f"{where}: missing key(s) {', '.join(missing)}")
    for key, kind in allowed.items():
        if key in data and (not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool))):
            raise EdgekitError(f"{where}: '{key}' must be a {kind.__name__}")


def _version_range(data: dict[str, Any], where: str) -> VersionRange:
    _check_keys(data, {"min": str}, {"max": str}, where)
    try:
        for value in data.values():
            version_tuple(value)
    except ValueError as exc:
        raise EdgekitError(f"{where}: {exc}") from None
    return VersionRange(data["min"], data.get("max"))


def _parse_gpu(data: dict[str, Any], source: str) -> GpuSpec:
    where = f"target file {source}: [gpu]"
    _check_keys(data, _GPU_REQUIRED, _GPU_OPTIONAL, where)
    if not re.fullmatch(r"\d{1,2}\.\d", data["compute_capability"]):
        raise EdgekitError(f'{where}: compute_capability must look like "8.7", not {data["compute_capability"]!r}')
    if data["dla_cores"] < 0 or data["memory_mb"] < 256:
        raise EdgekitError(f"{where}: dla_cores must be >= 0 and memory_mb at least 256")
    return GpuSpec(
        compute_capability=data["compute_capability"],
        dla_cores=data["dla_cores"],
        memory_mb=data["memory_mb"],
        tensorrt=_version_range(data["tensorrt"], f"{where} tensorrt"),
        cuda=_version_range(data["cuda"], f"{where} cuda"),
        jetpack=data.get("jetpack"),
    )


def _parse(data: dict[str, Any], source: str) -> Target:
    _check_keys(data, _REQUIRED, _OPTIONAL, f"target file {source}")
    if data["kind"] not in ("cpu", "gpu"):
        raise EdgekitError(f"target file {source}: kind must be 'cpu' or 'gpu', not {data['kind']!r}")
    if data.get("int8_io", "float32") not in INT8_IO:
        raise EdgekitError(f"target file {source}: int8_io must be one of {', '.join(INT8_IO)}")
    if (data["kind"] == "gpu") != ("gpu" in data):
        raise EdgekitError(f"target file {source}: a [gpu] table is required for kind 'gpu' and only allowed there")
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
        gpu=_parse_gpu(data["gpu"], source) if "gpu" in data else None,
        int8_io=data.get("int8_io", "float32"),
    )


def target_from_record(record: dict[str, Any]) -> Target:
    """The target a manifest recorded (`Target.to_dict`), read back with the same validation."""
    data = {k: v for k, v in record.items() if k in _REQUIRED or k in _OPTIONAL}
    if "gpu" in data:
        data["gpu"] = {k: v for k, v in data["gpu"].items() if k in _GPU_REQUIRED or k in _GPU_OPTIONAL}
    return _parse(data, str(record.get("source", "the bundle's manifest")))


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
        names = [t.stem for t in sorted(_targets_dir().glob("*.toml"))]
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise EdgekitError(
            f"unknown target {name_or_path!r}{hint}; known targets: {', '.join(names)} (see `edgekit targets`)"
        )
    return load_target_file(path)


_HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def host_arch() -> str | None:
    """This machine's architecture as target files spell it; None where no target file describes it."""
    return _HOST_ARCH.get(platform.machine().lower())
