"""Building the TensorRT engine on the device, from the ONNX file the bundle carries (`edgekit build`).

    check TensorRT + GPU ─► plan (recipe.plan_build) ─► build with the timing cache ─► engine + record in the bundle

The pipeline (`pipeline/device_build.py`) stages a copy of the bundle and hands it here; `edgekit
compile` reaches `finish_gpu_bundle` through the converter's `finish_bundle` hook, which builds the
engine itself where TensorRT and the target's GPU are present.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Any

from edgekit.backends.base import DeviceModelCheck, Samples
from edgekit.backends.tensorrt.device import CudaDevice, describe, probe
from edgekit.backends.tensorrt.engine_records import engine_file_name, engine_key
from edgekit.backends.tensorrt.recipe import BuildOptions, BuildPlan, plan_build
from edgekit.backends.tensorrt.run import TensorRTBackend
from edgekit.backends.tensorrt.trt_builder import build_engine, tensorrt_version
from edgekit.core.errors import EdgekitError
from edgekit.core.files import atomic_path, sha256_file
from edgekit.core.progress import Progress
from edgekit.core.versions import EDGEKIT_VERSION
from edgekit.targets import Target, target_from_record


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgekit" / "tensorrt"


def timing_cache_path(cache_dir: Path, version: str, device: CudaDevice) -> Path:
    """One timing cache per TensorRT version × GPU × CUDA driver: a cache from another is useless or wrong."""
    return cache_dir / f"timing-trt{version}-{device.slug}-sm{device.sm}-cuda{device.driver_version}.cache"


def check_device(manifest: dict[str, Any], bundle: Path) -> tuple[str, CudaDevice, Target]:
    """TensorRT, cuda-python and a GPU of the bundle's target: what building here needs, or why it cannot.
    (A bundle of another backend never gets here: its converter's `check_build_on_device` refuses it.)"""
    target = target_from_record(manifest["target"])
    problem = TensorRTBackend.host_problem(target)
    if problem:
        raise EdgekitError(
            f"cannot build {bundle}'s engine here: {problem}; run `edgekit build {bundle}` on the {target.name} "
            f"device itself ({TensorRTBackend.capabilities.install_hint})"
        )
    version, device = tensorrt_version(), probe()
    assert version is not None and device is not None  # host_problem checked both
    return version, device, target


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """How `edgekit build` runs the builder (not recorded: they do not change the engine)."""

    bundle: Path  # the bundle being extended, named in messages
    cache_dir: Path | None = None  # timing caches; None: $XDG_CACHE_HOME/edgekit/tensorrt
    verbose: bool = False  # TensorRT's INFO log


def add_engine(
    stage: Path,
    manifest: dict[str, Any],
    options: BuildOptions,
    settings: EngineSettings,
    check: DeviceModelCheck,
    progress: Progress,
) -> dict[str, Any]:
    """Build the engine into the (staging) bundle directory and return the updated manifest (not yet written).

    `check(stage, manifest, engine_file)` compares the new engine with the reference runtime on the ONNX it
    was built from (the pipeline owns both).
    """
    version, device, target = check_device(manifest, settings.bundle)
    onnx_path = stage / manifest["model_file"]
    plan = bundle_plan(manifest, target, options, version)
    for note in plan.notes:
        progress.note(f"note: {note}")
    cache_path = timing_cache_path(settings.cache_dir or default_cache_dir(), version, device)
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else None
    progress.note(
        f"building a {manifest['precision']} TensorRT {version} engine for {describe(device)}"
        f"{' (timing cache reused)' if cache_bytes else ''}; this takes minutes"
    )
    built = build_engine(onnx_path, plan, cache_bytes, verbose=settings.verbose)
    if built.timing_cache:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(built.timing_cache)
    placement = built.placement
    if placement.get("gpu_fallback"):  # never silent: DLA users size their GPU budget on this
        on_gpu = placement.get("network_layers_on_gpu") or []
        progress.note(
            f"warning: {len(on_gpu)} of {placement['network_layers_dla_capable'] + len(on_gpu)} layers run on the "
            f"GPU, not DLA core {plan.dla_core}: {', '.join(on_gpu[:5])}{' …' if len(on_gpu) > 5 else ''}"
        )
    onnx_sha = sha256_file(onnx_path)
    name = engine_file_name(version, device, engine_key(onnx_sha, version, device, options))
    (stage / name).parent.mkdir(exist_ok=True)
    (stage / name).write_bytes(built.plan)
    record = {
        "file": name,
        "sha256": sha256_file(stage / name),
        "tensorrt_version": version,
        "device": {**device.to_dict(), "sm": device.sm},
        "precision": manifest["precision"],
        "options": options.to_dict(),
        "plan": plan.to_dict(),
        "placement": placement,
        "version_compatible": options.version_compatible,
        "hardware_compatibility": plan.hardware_compatibility,
        "onnx_sha256": onnx_sha,
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "built_with": f"edgekit {EDGEKIT_VERSION}",
    }
    record["parity"] = check(stage, manifest, name)
    agreement = record["parity"].get("top1_agreement")
    if agreement is not None and agreement < 0.98:
        progress.note(
            f"warning: the engine agrees with ONNX Runtime on only {agreement:.1%} of "
            f"{record['parity']['images']} inputs (max abs diff {record['parity']['max_abs_diff']:.2e})"
        )
    record = json.loads(json.dumps(record))  # as the manifest will hold it (lists, not tuples)
    section = dict(manifest.get("tensorrt") or {})
    engines = [e for e in section.get("engines", []) if e["file"] != name]
    section["engines"] = [*engines, record]
    return {**manifest, "tensorrt": section}


def bundle_plan(manifest: dict[str, Any], target: Target, options: BuildOptions, version: str) -> BuildPlan:
    """The build plan of this bundle's engine for TensorRT `version` (edgekit build and trtexec alike)."""
    model_input = manifest["input"]
    sparse = bool(manifest.get("sparsity"))
    return plan_build(
        target, manifest["precision"], options, version, model_input["name"], model_input["shape"], sparse
    )


def trtexec_build(manifest: dict[str, Any], target: Target, options: BuildOptions, version: str) -> list[str]:
    """The trtexec argv that builds this bundle's engine on TensorRT `version`, from the same plan as
    `edgekit build` (refused, like it, for options the target or that version cannot have)."""
    from edgekit.backends.tensorrt.trtexec import KIT_DIR, trtexec_command

    shape = manifest["input"]["shape"]
    plan = bundle_plan(manifest, target, options, version)
    engine = f"{KIT_DIR}/{target.name}-trt{version}.plan"
    return trtexec_command(plan, manifest["model_file"], engine, shape[0] is not None, f"{KIT_DIR}/timing.cache")


def _add_trtexec_kit(
    stage: Path, manifest: dict[str, Any], target: Target, options: BuildOptions, samples: Samples | None
) -> dict[str, Any]:
    from edgekit.backends.tensorrt.trtexec import write_kit

    assert target.gpu is not None
    version = target.gpu.tensorrt.min
    build = trtexec_build(manifest, target, options, version)
    static = manifest["input"]["shape"][0]
    size = static or target.batch.max
    inputs, outputs = samples if samples is not None else (None, None)
    batches = [] if inputs is None else [(inputs[i : i + size], outputs[i : i + size]) for i in range(0, 16, size)]
    batches = [(x, y) for x, y in batches if len(x) == size]
    name = manifest["input"]["name"]
    return write_kit(stage, build, name, static is not None, batches, target.name, version)


def finish_gpu_bundle(
    stage: Path,
    manifest: dict[str, Any],
    target: Target,
    out: Path,
    options: BuildOptions | None,
    check: DeviceModelCheck,
    progress: Progress,
    samples: Samples | None = None,
) -> dict[str, Any]:
    """`edgekit compile` for a GPU target: kernels and build options into the bundle, and the engine
    too where this machine is the device; otherwise one line saying where the engine will be built."""
    from edgekit.backends.tensorrt.kernels.bundle import add_kernels

    options = options or BuildOptions()
    manifest["parity"]["runtime"] = "onnxruntime (CPU) on model.onnx, the file TensorRT builds its engine from"
    manifest["tensorrt"] = {"options": options.to_dict(), "engines": []}
    manifest["kernels"] = add_kernels(stage, target, progress)
    from edgekit.backends.tensorrt.trtexec import edgekit_runs_on

    if target.gpu is not None and not edgekit_runs_on(target.gpu.tensorrt.max):
        manifest["trtexec"] = _add_trtexec_kit(stage, manifest, target, options, samples)
        progress.note(
            f"note: edgekit does not run on {target.name}'s JetPack; the bundle carries trtexec/build_engine.sh, "
            "which builds and checks the engine there with NVIDIA's trtexec"
        )
        return manifest
    problem = TensorRTBackend.host_problem(target)
    if problem:
        progress.note(
            f"note: no TensorRT engine was built here ({problem}); the bundle is portable: "
            f"build the engine on the device with `edgekit build {out}`"
        )
        return manifest
    return add_engine(stage, manifest, options, EngineSettings(out), check, progress)
