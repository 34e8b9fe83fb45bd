"""`edgekit export triton`: a bundle as a Triton Inference Server model repository.

    REPO/<name>             images in, the model's output out: an ensemble of the two below where Triton has a
                            backend for the bundle's model file, else edgekit's Python-backend model itself
    REPO/<name>_preprocess  Python backend: encoded images → the model's input tensor (edgekit's own decode and
                            transform, as the bundle records them)
    REPO/<name>_model       Triton's native backend for the model file (`Backend.triton_model`: ONNX Runtime,
                            OpenVINO, TensorRT's plan built on this device); it takes the input tensor
    REPO/<name>_edgekit     Python backend: encoded images → class probabilities through edgekit's runtime
                            (any bundle, LiteRT included)

Each config.pbtxt is built as Triton's own `ModelConfig` protobuf message (the definitions tritonclient ships)
and written in its text format, so what Triton parses is what was checked here. Every Python-backend model
holds a copy of the bundle in its version folder and verifies it when Triton loads it.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import TritonModel
from edgekit.backends.registry import get_backend
from edgekit.core.errors import EdgekitError
from edgekit.runtime.bundle import read_manifest
from edgekit.runtime.manifest import Manifest
from edgekit.runtime.signing import SIGNATURE
from edgekit.serve.output import staged_export
from edgekit.serve.triton_python import BUNDLE_FOLDER, DEFAULT_MAX_IMAGE_BYTES, IMAGE_INPUT, PROBABILITIES_OUTPUT

LABELS = "labels.txt"
VERSION = "1"
MODEL_PY = '''"""Triton's Python backend loads this file; the model is edgekit's (edgekit/serve/triton_python.py).
Where Triton runs, install edgekit and the bundle's runtime: pip install "edgekit[onnxruntime]" (or openvino,
ai-edge-litert). The bundle beside this file is verified when the model loads."""

from edgekit.serve.triton_python import TritonPythonModel  # noqa: F401
'''


@dataclasses.dataclass(frozen=True)
class TritonSettings:
    name: str | None = None  # the entry model's name (default: the bundle folder's name)
    max_batch_size: int = 8  # the largest batch Triton's dynamic batcher forms
    max_queue_delay_us: int = 2000  # how long the batcher waits to fill a batch
    instances: int = 1  # model instances (each runs the backend with `threads` threads)
    threads: int | None = None  # the bundle's runtime threads per instance (None: the manifest's)
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES


@dataclasses.dataclass(frozen=True)
class TritonExport:
    out: Path
    entry: str  # the model a client sends images to
    models: dict[str, str]  # name → what it is
    native: str | None  # Triton's backend or platform for the model file, or None (served by edgekit's runtime)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "entry": self.entry, "models": self.models, "native": self.native,
                "notes": list(self.notes)}  # fmt: skip


def _pb() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise EdgekitError('writing Triton configs needs tritonclient: pip install "tritonclient[grpc,http]"') from None
    return model_config_pb2


def config_text(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def _check_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "_-." for c in name) or name.startswith("."):
        raise EdgekitError(f"--name {name!r} is not a usable Triton model name: use letters, digits, '_', '-' or '.'")
    return name


def _tensor_type(dtype: type[np.generic]) -> int:
    pb = _pb()
    return pb.TYPE_UINT8 if dtype == np.uint8 else pb.TYPE_FP32


def _batching(config: Any, settings: TritonSettings) -> None:
    config.max_batch_size = settings.max_batch_size
    config.dynamic_batching.max_queue_delay_microseconds = settings.max_queue_delay_us


def _images_input(config: Any) -> None:
    image = config.input.add(name=IMAGE_INPUT, data_type=_pb().TYPE_UINT8, dims=[-1])
    image.allow_ragged_batch = True  # each request's file has its own length; they are batched all the same


def _python_model(name: str, role: str, settings: TritonSettings) -> Any:
    pb = _pb()
    config = pb.ModelConfig(name=name, backend="python")
    _batching(config, settings)
    _images_input(config)
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=settings.instances)
    config.parameters["edgekit_role"].string_value = role
    config.parameters["edgekit_max_image_bytes"].string_value = str(settings.max_image_bytes)
    if settings.threads is not None:
        config.parameters["edgekit_threads"].string_value = str(settings.threads)
    return config


def edgekit_model_config(name: str, manifest: Manifest, settings: TritonSettings) -> Any:
    """The Python-backend model that serves the bundle through edgekit's runtime."""
    config = _python_model(name, "model", settings)
    config.output.add(
        name=PROBABILITIES_OUTPUT, data_type=_pb().TYPE_FP32, dims=[len(manifest.classes)], label_filename=LABELS
    )
    return config


def _input_dims(manifest: Manifest) -> list[int]:
    spec = manifest.input
    return (
        [spec.height, spec.width, spec.channels] if spec.layout == "NHWC" else [spec.channels, spec.height, spec.width]
    )


def _output_name(manifest: Manifest) -> str:
    name = manifest.section("output").get("name")
    if not isinstance(name, str) or not name:
        raise EdgekitError("the bundle's manifest names no output tensor; recompile it with this edgekit version")
    return name


def preprocess_config(name: str, manifest: Manifest, settings: TritonSettings) -> Any:
    config = _python_model(name, "preprocess", settings)
    config.output.add(
        name=manifest.input.name, data_type=_tensor_type(manifest.preprocessing.input_dtype), dims=_input_dims(manifest)
    )
    return config


def native_config(name: str, manifest: Manifest, native: TritonModel, settings: TritonSettings) -> Any:
    pb = _pb()
    config = pb.ModelConfig(name=name)
    if native.platform:
        config.platform = native.platform
    if native.backend:
        config.backend = native.backend
    if native.default_model_filename:
        config.default_model_filename = native.default_model_filename
    _batching(config, settings)
    dtype = _tensor_type(manifest.preprocessing.input_dtype)
    config.input.add(name=manifest.input.name, data_type=dtype, dims=_input_dims(manifest))
    config.output.add(
        name=_output_name(manifest), data_type=pb.TYPE_FP32, dims=[len(manifest.classes)], label_filename=LABELS
    )
    kind = getattr(pb.ModelInstanceGroup, native.instance_kind)
    config.instance_group.add(kind=kind, count=settings.instances)
    for key, value in native.parameters:
        config.parameters[key].string_value = value
    return config


def ensemble_config(name: str, preprocess: str, model: str, manifest: Manifest, settings: TritonSettings) -> Any:
    pb = _pb()
    config = pb.ModelConfig(name=name, platform="ensemble", max_batch_size=settings.max_batch_size)
    _images_input(config)
    output = _output_name(manifest)
    config.output.add(name=output, data_type=pb.TYPE_FP32, dims=[len(manifest.classes)], label_filename=LABELS)
    first = config.ensemble_scheduling.step.add(model_name=preprocess, model_version=-1)
    first.input_map[IMAGE_INPUT] = IMAGE_INPUT
    first.output_map[manifest.input.name] = "preprocessed"
    second = config.ensemble_scheduling.step.add(model_name=model, model_version=-1)
    second.input_map[manifest.input.name] = "preprocessed"
    second.output_map[output] = output
    return config


def _write_model(repo: Path, config: Any, labels: tuple[str, ...], files: dict[Path, str] | None = None) -> Path:
    folder = repo / config.name
    (folder / VERSION).mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config_text(config))
    if any(output.label_filename for output in config.output):
        (folder / LABELS).write_text("".join(f"{label}\n" for label in labels))
    for source, target in (files or {}).items():
        shutil.copyfile(source, folder / VERSION / target)
    return folder


def _copy_bundle(bundle: Path, manifest: Manifest, folder: Path) -> None:
    (folder / VERSION / "model.py").write_text(MODEL_PY)
    target = folder / VERSION / BUNDLE_FOLDER
    target.mkdir()
    for name in ("manifest.json", *sorted(manifest.files)):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle / name, target / name)
    if (bundle / SIGNATURE).is_file():  # a signed bundle stays signed (a trust policy may require it)
        shutil.copyfile(bundle / SIGNATURE, target / SIGNATURE)


def _write_edgekit_model(repo: Path, bundle: Path, manifest: Manifest, name: str, settings: TritonSettings) -> None:
    folder = _write_model(repo, edgekit_model_config(name, manifest, settings), manifest.classes)
    _copy_bundle(bundle, manifest, folder)


def _opened(bundle: Path, settings: TritonSettings) -> tuple[Manifest, str]:
    """The bundle's manifest (its files verified, its signature trusted) and the entry model's name."""
    manifest = read_manifest(bundle, verify=True, trust=True)
    return manifest, _check_name(settings.name or bundle.resolve().name)


def serving_repository(bundle: Path, repo: Path, settings: TritonSettings) -> str:
    """The repository `edgekit serve` runs: the bundle as edgekit's Python-backend model, named
    `settings.name` (default: the bundle folder's name). Returns the model's name."""
    manifest, name = _opened(bundle, settings)
    _write_edgekit_model(repo, bundle, manifest, name, settings)
    return name


def export_triton(bundle: Path, out: Path, settings: TritonSettings, force: bool = False) -> TritonExport:
    """Write the repository at `out` (staged: complete or not at all)."""
    manifest, name = _opened(bundle, settings)
    if not 1 <= settings.max_batch_size <= 1024:
        raise EdgekitError("--max-batch-size must be within 1..1024")
    backend = get_backend(manifest.backend)
    native = backend.triton_model(bundle, manifest, {})
    notes = []
    if native is not None and manifest.input.batch not in (None, 1):
        notes.append(
            f"the model file takes exactly {manifest.input.batch} images per run, which Triton's batcher cannot "
            "promise: served through edgekit's runtime only"
        )
        native = None
    models: dict[str, str] = {}
    record = {"kind": "triton", "bundle": str(bundle.resolve()), "entry": name}
    with staged_export(out, force, record) as repo:
        labels = manifest.classes
        edgekit_name = f"{name}_edgekit" if native is not None else name
        _write_edgekit_model(repo, bundle, manifest, edgekit_name, settings)
        models[edgekit_name] = f"Python backend: images in, {PROBABILITIES_OUTPUT} out, through edgekit's runtime"
        if native is not None:
            batch_one = manifest.input.batch == 1
            native_settings = dataclasses.replace(settings, max_batch_size=1) if batch_one else settings
            preprocess, model = f"{name}_preprocess", f"{name}_model"
            files = {bundle / source: target for source, target in native.files}
            _write_model(repo, native_config(model, manifest, native, native_settings), labels, files)
            models[model] = f"{native.platform or native.backend}: the model file, input tensor in"
            _copy_bundle(
                bundle, manifest, _write_model(repo, preprocess_config(preprocess, manifest, native_settings), labels)
            )
            models[preprocess] = "Python backend: images in, the model's input tensor out (edgekit's transform)"
            _write_model(repo, ensemble_config(name, preprocess, model, manifest, native_settings), labels)
            models[name] = f"ensemble: images in, {_output_name(manifest)} out ({preprocess} → {model})"
        record["models"] = models
    return TritonExport(out, name, models, native.platform or native.backend if native else None, tuple(notes))
