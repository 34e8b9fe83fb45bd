"""Engines inside a bundle: their records, which one fits this machine, and the refusal when none does.

A bundle may carry several engines (one per device × TensorRT version × options), each with its own
record in the manifest. Engines are not portable across TensorRT versions, GPUs or OSes, so loading
picks the one built for exactly this TensorRT and this GPU, and otherwise refuses with the command
that rebuilds it here: the bundle carries the ONNX file it was built from.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

from edgekit.backends.tensorrt.device import CudaDevice, describe
from edgekit.backends.tensorrt.recipe import BuildOptions
from edgekit.core.errors import BundleError, EdgekitError
from edgekit.targets import version_tuple

ENGINE_DIR = "engines"


def engine_key(onnx_sha256: str, tensorrt_version: str, device: CudaDevice, options: BuildOptions) -> str:
    """Model checksum + TensorRT version + device + options: what makes two engines interchangeable."""
    material = json.dumps([onnx_sha256, tensorrt_version, device.name, device.sm, options.to_dict()], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def engine_file_name(tensorrt_version: str, device: CudaDevice, key: str) -> str:
    return f"{ENGINE_DIR}/{device.slug}-sm{device.sm}-trt{tensorrt_version}-{key}.plan"


def _runs_here(record: dict[str, Any], tensorrt_version: str, device: CudaDevice) -> str | None:
    """Why the engine of `record` cannot run with this TensorRT on this GPU, or None."""
    built = record["tensorrt_version"]
    if record.get("version_compatible"):
        # A version-compatible plan runs on the TensorRT it was built with and later releases of that major.
        here, there = version_tuple(tensorrt_version), version_tuple(built)
        if here[0] != there[0] or here < there:
            return f"TensorRT {built} (version-compatible within {there[0]}.x), this machine has {tensorrt_version}"
    elif version_tuple(built)[:3] != version_tuple(tensorrt_version)[:3]:
        return f"TensorRT {built}, this machine has {tensorrt_version}"
    built_on = record["device"]
    if record.get("hardware_compatibility", "NONE") == "AMPERE_PLUS":
        if device.sm < 80:
            return f"Ampere-or-newer GPUs, this is {describe(device)}"
    elif built_on["compute_capability"] != device.compute_capability or built_on["name"] != device.name:
        return f"{built_on['name']} (sm_{built_on['sm']}), this GPU is {describe(device)}"
    return None


def rebuild_command(bundle: Path, options: dict[str, Any] | None = None) -> str:
    """The exact `edgekit build` line that rebuilds an engine with the same options on this machine."""
    opts = BuildOptions.from_dict(options or {})
    words = ["edgekit", "build", str(bundle)]
    if opts.dla_core is not None:
        words += ["--dla-core", str(opts.dla_core)]
        if opts.gpu_fallback:  # opt-in (an engine recorded before it was opt-in says so explicitly here)
            words.append("--gpu-fallback")
    if opts.opt_level is not None:
        words += ["--opt-level", str(opts.opt_level)]
    if opts.version_compatible:
        words.append("--version-compatible")
    if opts.hardware_compatibility != "none":
        words += ["--hardware-compatibility", opts.hardware_compatibility]
    if opts.sparse is not None:
        words.append("--sparse" if opts.sparse else "--no-sparse")
    return shlex.join(words)


def engine_records(section: Any) -> list[dict[str, Any]]:
    """The engine records of a manifest's `tensorrt` section, checked for what loading reads."""
    engines = (section or {}).get("engines") if isinstance(section, (dict, type(None))) else None
    if engines is None:
        return []
    shapes = {"file": str, "tensorrt_version": str, "device": dict, "options": dict}
    for record in engines if isinstance(engines, list) else [None]:
        if not isinstance(record, dict) or any(not isinstance(record.get(k), t) for k, t in shapes.items()):
            raise BundleError("manifest.json: tensorrt.engines has a malformed record; rebuild with `edgekit build`")
        built_on = record["device"]
        if not isinstance(built_on.get("compute_capability"), str) or not isinstance(built_on.get("name"), str):
            raise BundleError("manifest.json: tensorrt.engines[].device is malformed; rebuild with `edgekit build`")
    return engines


def select_engine(
    bundle: Path, section: Any, tensorrt_version: str, device: CudaDevice | None, dla_core: int | None
) -> dict[str, Any]:
    """The record of the engine (from the manifest's `tensorrt` section) to run here; EdgekitError saying
    what to run when there is none."""
    engines = engine_records(section)
    if device is None:
        raise EdgekitError(f"cannot run {bundle}: no CUDA GPU is visible to this process (TensorRT needs one)")
    if not engines:
        raise EdgekitError(
            f"{bundle} carries no TensorRT engine yet; build one on this device with `{rebuild_command(bundle)}`"
        )
    reasons = []
    for record in engines:
        reason = _runs_here(record, tensorrt_version, device)
        if reason is None and dla_core is not None and record["options"].get("dla_core") != dla_core:
            reason = f"DLA core {record['options'].get('dla_core')}, not {dla_core}"
        if reason is None:
            return record
        reasons.append(f"{record['file']} was built for {reason}")
    options = engines[-1]["options"] if dla_core is None else {**engines[-1]["options"], "dla_core": dla_core}
    raise EdgekitError(
        f"no engine in {bundle} runs here ({'; '.join(reasons)}); engines are not portable across TensorRT versions "
        f"or GPUs: rebuild with `{rebuild_command(bundle, options)}`"
    )
