"""compile's first stage: the user's model loaded (a checkpoint or an ONNX file), its transform_input decided,
pruned where asked, and the images it is checked on — everything checked before the slow work starts."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import EdgekitError
from edgekit.core.files import sha256_file
from edgekit.core.progress import Progress
from edgekit.data.batches import load_images, sample, synthetic_inputs
from edgekit.data.calibration import CalibrationSet, calibration_inputs
from edgekit.data.images import collect_images, has_class_folders
from edgekit.data.preprocess import PreprocessSpec
from edgekit.export.onnx_external_data import external_data_files
from edgekit.export.onnx_file import inspect_onnx, self_contained_bytes
from edgekit.measure.evaluate import EvalSet, load_eval_set
from edgekit.measure.reference import OnnxReference, TorchReference
from edgekit.pipeline.compile_config import CompileConfig, candidates


@dataclasses.dataclass
class LoadedSource:
    """What loading the user's model produced: manifest facts, the FP32 reference, and how to
    write the bundle's ONNX file."""

    manifest: dict[str, Any]  # source / model / classes sections
    reference: TorchReference | OnnxReference
    spec: PreprocessSpec
    description: str
    write_onnx: Callable[[Path], None]
    module: Any = None  # the PyTorch model, for a checkpoint source (what pruning works on)
    pruned: bool = False
    prune_search: Any = None  # a ratio search's trained candidates: kept until the bundle is written (resume)
    opset: int | None = None  # the opset the export writes (None: the user's ONNX ships as is)

    def describe(self) -> str:
        model = self.manifest["model"]
        transform = ""
        if model.get("transform_input") is not None:
            transform = f", transform_input={model['transform_input']} ({model['transform_input_source']})"
        pruned = ", pruned" if self.pruned else ""
        export = f"; exporting ONNX opset {self.opset}" if self.opset is not None else ""
        return f"{self.description}{transform}{pruned}{export}"


def _load_checkpoint(config: CompileConfig, threads: int) -> LoadedSource:
    from edgekit.export.onnx_export import export_onnx
    from edgekit.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(
        config.model,
        trust_pickle=config.trust_pickle,
        transform_input=config.transform_input,
        class_names=list(config.class_names) if config.class_names else None,
        arch=config.arch,
    )
    spec = loaded.preprocessing.with_overrides(resize=config.resize, crop=config.crop, decode=config.preprocess)
    from edgekit.model.families import check_input_size

    check_input_size(loaded.module, spec.crop, loaded.arch)
    opset = config.target.onnx_opset
    pruning = loaded.pruning  # a checkpoint written by `edgekit prune` carries its record
    return LoadedSource(
        manifest={
            "source": {
                "format": "pytorch-checkpoint",
                "sha256": loaded.sha256,  # hashed once, when loaded
                "checkpoint_form": loaded.checkpoint_form,
                "dropped_aux_keys": loaded.dropped_aux_keys,
            },
            "model": {
                "architecture": f"torchvision.models.{loaded.arch}",
                "arch": loaded.arch,
                "arch_source": loaded.arch_source,
                "num_classes": loaded.num_classes,
                "transform_input": loaded.transform_input,
                "transform_input_source": loaded.transform_input_source,
            },
            "classes": list(loaded.class_names),
            "classes_source": loaded.class_names_source,
            **({"pruning": pruning} if pruning is not None else {}),
        },
        reference=TorchReference(loaded.module, threads),
        spec=spec,
        description=(
            f"{loaded.arch} ({loaded.arch_source}; {loaded.checkpoint_form}), {loaded.num_classes} classes "
            f"({loaded.class_names_source} names)"
        ),
        pruned=pruning is not None,
        opset=opset,
        write_onnx=lambda path: export_onnx(loaded.module, path, spec.crop, opset),
        module=loaded.module,
    )


EVIDENCE_IMAGES = 64


def _check_transform_input(config: CompileConfig, source: LoadedSource, progress: Progress) -> LoadedSource:
    """Decide (when the checkpoint does not record it) or check (when it does, or a flag sets it) the
    model's transform_input from the user's images; see `model/evidence.py`. Sets it on the module that
    the reference and the export share, and records the evidence in the manifest."""
    from edgekit.model.evidence import transform_input_evidence

    model = dict(source.manifest["model"])
    current, how = model["transform_input"], model["transform_input_source"]
    folder = config.calib or config.val
    if folder is None:
        if how == "default":
            progress.note(
                "note: the checkpoint does not record transform_input; assumed on (torchvision's ImageNet setting): "
                "pass --calib or --val to decide it from your images, or --transform-input / --no-transform-input"
            )
        return source
    files = sample(collect_images([folder]), EVIDENCE_IMAGES)
    try:
        images = load_images(files, source.spec).inputs
    except EdgekitError:  # no readable image: the calibration or evaluation step says so, with its context
        return source
    evidence = transform_input_evidence(source.module, images)
    if evidence is None:
        return source
    model["transform_input_evidence"] = {**evidence.to_dict(), "folder": str(folder)}
    figures = (
        f"mismatch {evidence.mismatch[True]:.2f} on / {evidence.mismatch[False]:.2f} off, {evidence.images} images"
    )
    if how == "default" and evidence.strong:
        current, how = evidence.best, "images"
        source.module.transform_input = current
        progress.note(f"transform_input={current}, decided from your images ({figures})")
    elif how == "default":
        progress.note(
            f"warning: transform_input is not recorded and your images do not tell ({figures}); assumed on: "
            "pass --transform-input or --no-transform-input if you know how the model was trained"
        )
    elif evidence.strong and evidence.best != current:
        flag = "--transform-input" if evidence.best else "--no-transform-input"
        progress.note(
            f"warning: transform_input={current} ({how}) but the first layer's statistics on your images say "
            f"{evidence.best} ({figures}); if predictions look wrong, compile with {flag}"
        )
    if not evidence.preprocessing_fits:
        progress.note(
            f"warning: the first layer's statistics fit neither transform_input setting ({figures}): the "
            "preprocessing (mean/std, resize) may not be the one the model was trained with"
        )
    model.update(transform_input=current, transform_input_source=how)
    return dataclasses.replace(source, manifest={**source.manifest, "model": model})


def _prune_stage(
    config: CompileConfig, source: LoadedSource, data: Any, threads: int, progress: Progress
) -> LoadedSource:
    """`compile --prune`: the pruning of `edgekit prune`, in memory; parity is then against the pruned model."""
    from edgekit.export.onnx_export import export_onnx
    from edgekit.optimize.prune import check_accuracy_drop
    from edgekit.pipeline.prune import fp32_latency_meter, prune_or_search

    if config.prune is None or source.module is None:
        raise RuntimeError("pruning stage without settings or a PyTorch model")
    with tempfile.TemporaryDirectory(prefix=f".{config.out.name}.prune-", dir=config.out.parent) as work:
        latency = fp32_latency_meter(config.target, source.spec.crop, threads, Path(work))
        outcome, state = prune_or_search(
            source.module,
            config.prune,
            source.spec,
            data,
            latency,
            source.manifest["source"]["sha256"],
            config.out,
            progress,
        )
    check_accuracy_drop(outcome.report, config.max_accuracy_drop)
    module, opset, crop = outcome.module, config.target.onnx_opset, source.spec.crop
    reference = TorchReference(module, threads)
    reference.kind = "pytorch (pruned)"  # parity holds the bundle to the pruned model; bench to the original
    return dataclasses.replace(
        source,
        manifest={**source.manifest, "pruning": {**outcome.report, "stage": "edgekit compile --prune"}},
        reference=reference,
        pruned=True,
        prune_search=state,
        write_onnx=lambda path: export_onnx(module, path, crop, opset),
        module=module,
    )


def _load_onnx(config: CompileConfig, threads: int) -> LoadedSource:
    info = inspect_onnx(config.model)
    if info.height is not None and info.height != info.width:
        raise EdgekitError(f"{config.model}: input is {info.height}×{info.width}; edgekit expects a square input")
    default = PreprocessSpec()
    if info.height is not None and info.height != default.crop and config.crop is None:
        # Keep the ImageNet resize/crop ratio (256/224) for a differently sized fixed input.
        default = PreprocessSpec(resize=round(info.height * 256 / 224), crop=info.height)
    spec = default.with_overrides(resize=config.resize, crop=config.crop, decode=config.preprocess)
    if info.height is not None and spec.crop != info.height:
        raise EdgekitError(f"{config.model} takes {info.height}×{info.width} images; --crop {spec.crop} does not fit")
    model_bytes = self_contained_bytes(config.model)
    files = external_data_files(config.model)
    external = {"external_data": files} if files else {}
    reference = OnnxReference(config.model, threads, info.output_kind, info.batch, model_bytes)
    num_classes = info.num_classes or reference.run(np.zeros((1, 3, spec.crop, spec.crop), np.float32)).shape[-1]
    if config.class_names and len(config.class_names) != num_classes:
        raise EdgekitError(f"--classes lists {len(config.class_names)} names but the model has {num_classes} outputs")
    return LoadedSource(
        manifest={
            "source": {"format": "onnx", "sha256": sha256_file(config.model), **external},
            "model": {"architecture": "onnx (external)", "num_classes": num_classes, "transform_input": None},
            "classes": list(config.class_names or (f"class_{i}" for i in range(num_classes))),
            "classes_source": "--classes" if config.class_names else "generated",
        },
        reference=reference,
        spec=spec,
        description=(
            f"ONNX opset {info.opset}, input {info.input_name!r} with batch {info.batch or 'dynamic'}, "
            f"output {info.output_kind}, {num_classes} classes; the file ships unchanged"
        ),
        # The user's graph is what ships: byte for byte, or with its external data taken inside.
        write_onnx=lambda path: path.write_bytes(model_bytes),
    )


def _load_calibration(config: CompileConfig, spec: PreprocessSpec) -> CalibrationSet:
    """INT8: calibration images and the guard's held-out part; FP16: held-out images only (nothing to
    calibrate); FP32: nothing (parity runs on --val)."""
    folder = config.calib or config.val
    if config.precision == "fp32" or folder is None:
        if config.precision == "int8":  # validate() rules this out
            raise RuntimeError("int8 without calibration images")
        return CalibrationSet(None, None, [])
    flag = "--calib" if config.calib is not None else "--val"
    size = config.calib_size if config.precision == "int8" else 0
    images = calibration_inputs(folder, spec, size, flag=flag, cross_fit=True)
    if config.calib is None and config.precision == "int8":
        images.warnings.append(
            "calibrating on part of the --val images (no --calib given): accuracy on --val may look better than it is"
        )
    return images


SYNTHETIC_PARITY_INPUTS = 16


@dataclasses.dataclass
class Prepared:
    """What the candidates are built from: the model (transform_input decided, pruned where asked), the images
    it is checked on, and the top-1 budget quantization may still spend."""

    source: LoadedSource
    evalset: EvalSet | None  # --val
    calibration: CalibrationSet
    inputs: np.ndarray  # what parity and --val accuracy run on: --val's images, else synthetic inputs
    inputs_source: str  # "synthetic", or where the images came from
    unreadable: dict[str, str]
    budget: float | None  # --max-accuracy-drop, less what pruning spent

    @property
    def labels(self) -> np.ndarray | None:
        return self.evalset.labels if self.evalset is not None else None


def prepare(config: CompileConfig, threads: int, progress: Progress) -> Prepared:
    """Load → transform_input → images (read, so that a bad folder fails before pruning) → prune."""
    source = (_load_onnx if config.is_onnx else _load_checkpoint)(config, threads)
    if source.module is not None:
        source = _check_transform_input(config, source, progress)
    prune_data = None
    if config.prune is not None:
        from edgekit.optimize.prune import load_prune_data

        classes = tuple(source.manifest["classes"])
        labelled_val = config.val if has_class_folders(config.val) else None  # a flat --val only serves parity
        prune_data = load_prune_data(config.prune, labelled_val, classes, source.manifest["classes_source"])
    evalset: EvalSet | None = None
    if config.val is not None:
        evalset = load_eval_set(config.val, source.manifest["classes"], source.spec, config.parity_images)
        if evalset.mapping:
            progress.note(f"note: {evalset.mapping}")
    calibration = _load_calibration(config, source.spec)

    host = " (this host; no --target given)" if config.target_from_host else ""
    names = ", ".join(c.backend.name for c in candidates(config))
    progress.note(f"target {config.target.name}{host}, backend {names}, precision {config.precision}")
    budget = config.max_accuracy_drop
    if prune_data is not None:
        from edgekit.optimize.prune import accuracy_drop_pts

        source = _prune_stage(config, source, prune_data, threads, progress)
        spent = accuracy_drop_pts(source.manifest["pruning"])
        if budget is not None and spent is not None and config.precision != "fp32":
            # One budget for the whole pipeline: quantization may only lose what pruning left over.
            budget = max(0.0, budget - max(spent, 0.0))
            progress.note(f"pruning used {max(spent, 0.0):.2f} top-1 points; quantization may lose {budget:.2f}")
    progress.note(source.describe())
    if evalset is None:
        inputs, inputs_source, unreadable = synthetic_inputs(SYNTHETIC_PARITY_INPUTS, source.spec), "synthetic", {}
        progress.note("parity is checked on synthetic inputs; pass --val DIR to check on your own images")
    else:
        inputs, inputs_source, unreadable = evalset.batch.inputs, evalset.source, evalset.batch.errors
    for file, reason in unreadable.items():
        progress.note(f"warning: skipped {file}: {reason}")
    for warning in calibration.warnings:
        progress.note(f"warning: {warning}")
    return Prepared(source, evalset, calibration, inputs, inputs_source, unreadable, budget)
