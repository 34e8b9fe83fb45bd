"""`edgekit build BUNDLE`: the device's own model (a TensorRT engine) built on the device, added to the bundle.

The bundle is copied into a hidden staging directory, the backend's `build_on_device` hook adds its model
and record there, the new model is checked against the reference runtime on the ONNX it was built from,
and the copy is renamed over the bundle only when everything succeeded: a failed or interrupted build
leaves the bundle as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.backends.base import ModelFiles
from edgekit.backends.registry import get_backend, reference_backend
from edgekit.core.progress import QUIET, Progress
from edgekit.data.batches import load_images, sample, synthetic_inputs
from edgekit.data.images import collect_images
from edgekit.data.preprocess import PreprocessSpec
from edgekit.measure.evaluate import compare, run_batched
from edgekit.runtime.bundle import read_manifest, read_verified, staged_directory, write_manifest
from edgekit.runtime.model import Runner

PARITY_IMAGES = 32


@dataclasses.dataclass(frozen=True)
class DeviceBuildConfig:
    bundle: Path
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # by name; none given: those recorded
    cache_dir: Path | None = None  # timing caches; None: $XDG_CACHE_HOME/edgekit/tensorrt
    verbose: bool = False
    images: Path | None = None  # the new model is checked on these (else synthetic inputs) against the reference


def check_device_model(
    stage: Path, manifest: dict[str, Any], model_file: str, images: Path | None = None
) -> dict[str, Any]:
    """A model built on the device against the reference runtime running the ONNX file it was built from.

    The compile-time figures (accuracy, agreement with FP32) were measured on that ONNX file; this says
    whether the device's model reproduces it. TensorRT may use TF32 or fused kernels, so small
    differences are expected; the top-1 agreement is what to watch.
    """
    reference = reference_backend()
    missing = reference.unavailable_reason()
    if missing:
        return {"checked": False, "why": missing}
    spec = PreprocessSpec.from_dict(manifest["preprocessing"])
    if images is None:
        inputs, source = synthetic_inputs(PARITY_IMAGES, spec), "synthetic"
    else:
        inputs, source = load_images(sample(collect_images([images]), PARITY_IMAGES), spec).inputs, str(images)
    batch = manifest["input"]["shape"][0]
    backend = get_backend(manifest["backend"])
    onnx = ModelFiles.from_directory(stage, manifest["model_file"], reference)
    onnx_runner = Runner(reference, onnx, 0, batch, manifest["precision"])
    # Trusted: built by this process a moment ago.
    built = ModelFiles.from_directory(stage, model_file, backend)
    device_runner = Runner(backend, built, 0, batch, manifest["precision"], backend.trusted_run_options())
    expected = run_batched(onnx_runner.run, inputs, 8)
    return {
        "checked": True,
        **compare(expected, run_batched(device_runner.run, inputs, 8)),
        "against": f"{reference.name} (CPU) on the bundle's {manifest['model_file']}",
        "inputs": source,
        "images": len(inputs),
    }


def native_build_command(config: DeviceBuildConfig, tensorrt_version: str | None = None) -> str:
    """`edgekit build --print-trtexec`: the vendor tool's command for this bundle, built nothing."""
    manifest = read_manifest(config.bundle, verify=True, trust=True)
    backend = get_backend(manifest.backend)
    options = backend.parse_options(config.options)
    return backend.native_build_command(manifest.to_dict(), config.bundle, options, tensorrt_version)


def build_on_device(config: DeviceBuildConfig, progress: Progress = QUIET) -> dict[str, Any]:
    """Add a model for this device to the bundle; returns the new model's record."""
    manifest = read_manifest(config.bundle, verify=True, trust=True)
    backend = get_backend(manifest.backend)  # the run half: a device never imports a convert half
    backend.check_build_on_device(manifest.to_dict(), config.bundle)  # fail before copying anything
    options = backend.parse_options(config.options)
    settings = {"bundle": config.bundle, "cache_dir": config.cache_dir, "verbose": config.verbose}

    def check(stage: Path, manifest: dict[str, Any], model_file: str) -> dict[str, Any]:
        return check_device_model(stage, manifest, model_file, config.images)

    with staged_directory(config.bundle, force=True) as stage:
        # Only what the manifest lists, as the bytes just verified: an unlisted file never becomes "verified".
        for name in manifest.files:
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_bytes(read_verified(config.bundle, manifest, name))
        draft = manifest.to_dict()
        updated, record = backend.build_on_device(stage, draft, options, settings, check, progress)
        write_manifest(stage, updated)
    return record
