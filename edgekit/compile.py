"""`edgekit compile`: checkpoint or ONNX file → verified, self-describing bundle.

    load ─► export ONNX (checkpoints) ─► parity vs the FP32 reference on the chosen backend ─► bundle

Data flows one way; the bundle is staged and renamed into place only after parity holds.
"""

from __future__ import annotations

import datetime
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

import edgekit
from edgekit.backends import Backend, OnnxRuntimeBackend
from edgekit.bench.evaluate import compare, load_eval_set, run_batched, score, synthetic_inputs
from edgekit.bundle import staged_directory, write_manifest
from edgekit.config import CompileConfig, validate
from edgekit.data.preprocess import PreprocessSpec
from edgekit.errors import EdgekitError, ParityError
from edgekit.export.onnx_file import OnnxInfo, inspect_onnx
from edgekit.model.checkpoint import sha256_file
from edgekit.progress import QUIET, Progress
from edgekit.reference import OnnxReference, TorchReference
from edgekit.runtime import Runner, resolve_threads

MODEL_FILE = "model.onnx"
MIN_TOP1_AGREEMENT = 0.995
SYNTHETIC_PARITY_INPUTS = 16


def parity_tolerance(reference: np.ndarray) -> float:
    """FP32 runtimes reorder sums, so outputs differ by rounding: allow 1e-3 relative to their scale."""
    return 1e-3 * max(1.0, float(np.max(np.abs(reference))))


def _prepare_checkpoint(
    config: CompileConfig, stage: Path, progress: Progress
) -> tuple[dict[str, Any], Any, PreprocessSpec]:
    from edgekit.export.onnx_export import export_onnx
    from edgekit.model.checkpoint import load_checkpoint

    progress.note(f"loading checkpoint {config.model}")
    loaded = load_checkpoint(
        config.model,
        trust_pickle=config.trust_pickle,
        transform_input=config.transform_input,
        class_names=list(config.class_names) if config.class_names else None,
    )
    if loaded.class_names_source == "--classes" and loaded.preprocessing is not None:
        progress.note("note: --classes replaces the class names recorded in the checkpoint")
    spec = (loaded.preprocessing or PreprocessSpec()).with_overrides(resize=config.resize, crop=config.crop)
    progress.note(
        f"GoogLeNet, {loaded.num_classes} classes ({loaded.class_names_source} names), transform_input="
        f"{loaded.transform_input} ({loaded.transform_input_source}), exporting ONNX opset {config.target.onnx_opset}"
    )
    export_onnx(loaded.module, stage / MODEL_FILE, spec.crop, config.target.onnx_opset)
    info = inspect_onnx(stage / MODEL_FILE)
    section = {
        "source": {
            "format": "pytorch-checkpoint",
            "checkpoint_form": loaded.checkpoint_form,
            "dropped_aux_keys": loaded.dropped_aux_keys,
        },
        "model": {
            "architecture": "torchvision.models.googlenet",
            "num_classes": loaded.num_classes,
            "transform_input": loaded.transform_input,
            "transform_input_source": loaded.transform_input_source,
        },
        "classes": list(loaded.class_names),
        "classes_source": loaded.class_names_source,
        "onnx": info,
    }
    threads = resolve_threads(config.threads if config.threads is not None else config.target.threads)
    return section, TorchReference(loaded.module, threads), spec


def _prepare_onnx(config: CompileConfig, stage: Path, progress: Progress) -> tuple[dict[str, Any], Any, PreprocessSpec]:
    progress.note(f"checking ONNX file {config.model}")
    info: OnnxInfo = inspect_onnx(config.model)
    if info.height is not None and info.height != info.width:
        raise EdgekitError(f"{config.model}: input is {info.height}×{info.width}; edgekit expects a square input")
    default = PreprocessSpec()
    if info.height is not None and info.height != default.crop and config.crop is None:
        # Keep the ImageNet resize/crop ratio (256/224) for a differently sized fixed input.
        default = PreprocessSpec(resize=round(info.height * 256 / 224), crop=info.height)
    spec = default.with_overrides(resize=config.resize, crop=config.crop)
    if info.height is not None and spec.crop != info.height:
        raise EdgekitError(f"{config.model} takes {info.height}×{info.width} images; --crop {spec.crop} does not fit")
    threads = resolve_threads(config.threads if config.threads is not None else config.target.threads)
    reference = OnnxReference(config.model, threads, info.output_kind, info.batch)
    num_classes = info.num_classes or reference.run(np.zeros((1, 3, spec.crop, spec.crop), np.float32)).shape[-1]
    if config.class_names and len(config.class_names) != num_classes:
        raise EdgekitError(f"--classes lists {len(config.class_names)} names but the model has {num_classes} outputs")
    names = list(config.class_names) if config.class_names else [f"class_{i}" for i in range(num_classes)]
    shutil.copyfile(config.model, stage / MODEL_FILE)  # byte for byte: the user's graph is what ships
    progress.note(
        f"ONNX opset {info.opset}, input {info.input_name!r} batch {info.batch or 'dynamic'}, output {info.output_kind}"
    )
    section = {
        "source": {"format": "onnx"},
        "model": {"architecture": "onnx (external)", "num_classes": num_classes, "transform_input": None},
        "classes": names,
        "classes_source": "--classes" if config.class_names else "generated",
        "onnx": info,
    }
    return section, reference, spec


def _tool_versions(backend: type[Backend]) -> dict[str, str]:
    import onnx

    versions = {"python": platform.python_version(), "numpy": np.__version__, "onnx": onnx.__version__}
    if "torch" in sys.modules:
        versions["torch"] = sys.modules["torch"].__version__
    versions.update(OnnxRuntimeBackend.versions())
    versions.update(backend.versions())
    return versions


def compile_bundle(config: CompileConfig, progress: Progress = QUIET) -> dict[str, Any]:
    """Build the bundle described by `config`; returns its manifest."""
    backend = validate(config)
    threads = config.threads if config.threads is not None else config.target.threads
    progress.note(f"target {config.target.name}, backend {backend.name}, precision {config.precision}")
    with staged_directory(config.out, config.force) as stage:
        prepare = _prepare_onnx if config.is_onnx else _prepare_checkpoint
        section, reference, spec = prepare(config, stage, progress)
        info: OnnxInfo = section.pop("onnx")

        if config.val is not None:
            evalset = load_eval_set(config.val, section["classes"], spec, config.parity_images, progress)
            inputs, parity_source, unreadable = evalset.batch.inputs, evalset.source, evalset.batch.errors
        else:
            evalset = None
            inputs, parity_source, unreadable = (
                synthetic_inputs(SYNTHETIC_PARITY_INPUTS, spec),
                "synthetic",
                {},
            )
            progress.note("parity is checked on synthetic inputs; pass --val DIR to check on your own images")
        for file, reason in unreadable.items():
            progress.note(f"warning: skipped {file}: {reason}")
        runner = Runner(backend, stage / MODEL_FILE, threads, info.batch)
        ref_out = run_batched(reference.run, inputs, 8, progress, "reference")
        new_out = run_batched(runner.run, inputs, 8, progress, backend.name)
        parity = compare(ref_out, new_out)
        tolerance = parity_tolerance(ref_out)
        parity.update(
            reference=reference.kind,
            inputs=parity_source,
            images=len(inputs),
            unreadable=len(unreadable),
            max_abs_diff_allowed=tolerance,
            min_top1_agreement=MIN_TOP1_AGREEMENT,
        )
        if parity["max_abs_diff"] > tolerance or parity["top1_agreement"] < MIN_TOP1_AGREEMENT:
            raise ParityError(
                f"{backend.name} does not reproduce the {reference.kind} model: max abs diff "
                f"{parity['max_abs_diff']:.2e} (allowed {tolerance:.2e}), top-1 agreement "
                f"{parity['top1_agreement']:.2%} on {len(inputs)} inputs; no bundle was written"
            )
        progress.note(
            f"parity: max abs diff {parity['max_abs_diff']:.2e}, top-1 agreement {parity['top1_agreement']:.2%} "
            f"on {len(inputs)} {'synthetic inputs' if evalset is None else 'images'}"
        )

        manifest: dict[str, Any] = {
            "edgekit_version": edgekit.__version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "source": {
                "path": str(config.model.resolve()),
                "file_name": config.model.name,
                "sha256": sha256_file(config.model),
                **section["source"],
            },
            "model": {**section["model"], "output_kind": info.output_kind},
            "classes": section["classes"],
            "classes_source": section["classes_source"],
            "preprocessing": spec.to_dict(),
            "model_file": MODEL_FILE,
            "input": {
                "name": info.input_name,
                "shape": [info.batch, 3, spec.crop, spec.crop],
                "dtype": "float32",
                "layout": "NCHW",
            },
            "output": {"name": info.output_name, "kind": info.output_kind},
            "onnx_opset": info.opset,
            "precision": config.precision,
            "backend": backend.name,
            "target": config.target.to_dict(),
            "parity": parity,
            "tools": _tool_versions(backend),
        }
        if evalset is not None and evalset.labels is not None:
            predictions = {"bundle": new_out.argmax(1), "reference": ref_out.argmax(1)}
            manifest["accuracy"] = score(predictions, evalset.labels, section["classes"], reference="reference")
        return write_manifest(stage, manifest)
