"""`edgekit compile`: checkpoint or ONNX file → verified, self-describing bundle.

    validate ─► load (checkpoint or ONNX; transform_input decided) ─► [prune] ─► images (--val, calibration,
    the guard's held-out or cross-fitted folds) ─► export FP32 ONNX ─► candidates: FP32 — every backend built,
    parity-checked, timed together; FP16/INT8 — the accuracy guard's ladder (optimize/ladder.py) ─► install the
    chosen one ─► [fold normalisation] ─► the backend's finish (kernels, engine) ─► manifest ─► bundle

Data flows one way. Everything a user can get wrong is checked before the first progress line, so a
mistake is a single `error:` line; the bundle is staged and renamed into place only after its checks hold.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Converter, ConvertRequest, QuantizerSetting
from edgekit.backends.converters import get_converter
from edgekit.backends.registry import reference_backend
from edgekit.core.errors import EdgekitError, ParityError
from edgekit.core.files import sha256_file
from edgekit.core.progress import QUIET, Progress
from edgekit.core.threads import resolve_threads
from edgekit.core.versions import EDGEKIT_VERSION
from edgekit.data.batches import load_images, sample, synthetic_inputs
from edgekit.data.calibration import CalibrationSet, calibration_inputs
from edgekit.data.images import collect_images, has_class_folders
from edgekit.data.preprocess import PreprocessSpec
from edgekit.export.onnx_file import inspect_onnx
from edgekit.measure.evaluate import EvalSet, compare, labels_warning, load_eval_set, run_batched, score
from edgekit.measure.reference import OnnxReference, TorchReference
from edgekit.model.layout import LAYER_GROUPS
from edgekit.optimize.ladder import BackendLadder, Rules, Rung, climb, fastest_first, speeds_text
from edgekit.pipeline.candidates import SENSITIVITY_IMAGES, CandidateBuilder, CheckImages
from edgekit.pipeline.compile_config import CompileConfig, candidates, resolve, validate
from edgekit.pipeline.device_build import check_device_model
from edgekit.pipeline.preprocess_checks import fast_decode_check, fold_normalisation
from edgekit.runtime.bundle import staged_directory, write_manifest
from edgekit.runtime.manifest import Manifest
from edgekit.runtime.model import Runner

MIN_TOP1_AGREEMENT = 0.995
SYNTHETIC_PARITY_INPUTS = 16


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


def parity_tolerance(reference: np.ndarray) -> float:
    """FP32 runtimes reorder sums, so outputs differ by rounding: allow 1e-3 relative to their scale."""
    return 1e-3 * max(1.0, float(np.max(np.abs(reference))))


def _load_checkpoint(config: CompileConfig, threads: int) -> LoadedSource:
    from edgekit.export.onnx_export import export_onnx
    from edgekit.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(
        config.model,
        trust_pickle=config.trust_pickle,
        transform_input=config.transform_input,
        class_names=list(config.class_names) if config.class_names else None,
    )
    spec = (loaded.preprocessing or PreprocessSpec()).with_overrides(
        resize=config.resize, crop=config.crop, decode=config.preprocess
    )
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
                "architecture": "torchvision.models.googlenet",
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
            f"GoogLeNet ({loaded.checkpoint_form}), {loaded.num_classes} classes ({loaded.class_names_source} names)"
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
    reference = OnnxReference(config.model, threads, info.output_kind, info.batch)
    num_classes = info.num_classes or reference.run(np.zeros((1, 3, spec.crop, spec.crop), np.float32)).shape[-1]
    if config.class_names and len(config.class_names) != num_classes:
        raise EdgekitError(f"--classes lists {len(config.class_names)} names but the model has {num_classes} outputs")
    return LoadedSource(
        manifest={
            "source": {"format": "onnx", "sha256": sha256_file(config.model)},
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
        # Byte for byte: the user's graph is what ships.
        write_onnx=lambda path: shutil.copyfile(config.model, path),
    )


def _tool_versions(converter: type[Converter]) -> dict[str, str]:
    import onnx

    versions = {"python": platform.python_version(), "numpy": np.__version__, "onnx": onnx.__version__}
    if "torch" in sys.modules:
        versions["torch"] = sys.modules["torch"].__version__
    versions.update(reference_backend().versions())
    versions.update(converter.versions())
    return versions


def _parity(reference: np.ndarray, candidate: np.ndarray, source: str, unreadable: int) -> dict[str, Any]:
    parity: dict[str, Any] = compare(reference, candidate)
    parity.update(
        inputs=source,
        images=len(reference),
        unreadable=unreadable,
        max_abs_diff_allowed=parity_tolerance(reference),
        min_top1_agreement=MIN_TOP1_AGREEMENT,
    )
    return parity


@dataclasses.dataclass
class Built:
    """One build of the backend's model file, run on the parity/evaluation inputs."""

    model_file: str
    facts: dict[str, Any]
    runner: Runner
    outputs: np.ndarray


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


def _guard_images(
    calibration: CalibrationSet, source: LoadedSource, val: tuple[np.ndarray, np.ndarray] | None
) -> dict[str, Any]:
    """CheckImages' guard and sensitivity fields: FP32's outputs on the held-out and calibration images.
    Where the calibration folder is too small to hold images back, the --val images (never calibrated on
    when --calib is given) and FP32's outputs on them, already computed, are the guard's."""
    fields: dict[str, Any] = {}
    if calibration.folds is not None:
        fields.update(folds=calibration.folds, fold_references=tuple(run_batched(source.reference.run, fold, 8)
                                                                      for fold in calibration.folds))  # fmt: skip
    elif calibration.held_out is not None:
        held_out = calibration.held_out
        fields.update(held_out=held_out, held_out_reference=run_batched(source.reference.run, held_out, 8))
    elif val is not None:
        fields.update(held_out=val[0], held_out_reference=val[1])
    if calibration.inputs is not None:
        sensitivity = calibration.inputs[:SENSITIVITY_IMAGES]
        fields.update(sensitivity=sensitivity, sensitivity_reference=run_batched(source.reference.run, sensitivity, 8))
    return fields


def _guard_image_count(images: CheckImages) -> int:
    if images.folds is not None:
        return sum(len(fold) for fold in images.folds)
    return 0 if images.held_out is None else len(images.held_out)


def _held_out_note(calibration: CalibrationSet, images: CheckImages) -> str:
    if calibration.folds is not None:
        return "the calibration folder, cross-fitted: each image judged by a build calibrated on the other half"
    if images.held_out is None:
        return "none: too few images to hold some back"
    if calibration.held_out is None:
        return "the --val images (the calibration folder was too small to hold images back)"
    return "the calibration folder, never calibrated on" if calibration.inputs is not None else "the image folder"


def _options_only(converter: type[Converter], config: CompileConfig) -> tuple[QuantizerSetting, ...]:
    """With --method given the calibration method is the user's: only the quantizer's options are rungs."""
    return tuple(s for s in converter.quantizer_settings(config.precision) if s.kind != "calibration")


def _choose_fp32(
    builder: CandidateBuilder, ladders: list[BackendLadder], reference: str, progress: Progress
) -> tuple[Rung, dict[str, Any]]:
    """FP32: every candidate backend is built and timed; the fastest that reproduces the reference wins (by
    `SPEED_MARGIN`, timed side by side; a near tie keeps the target file's order)."""
    images = builder.images
    outcomes, problems = [], []
    for ladder in ladders:
        outcome = builder.evaluate(Rung(ladder.backend))
        figures = _parity(images.reference, builder.built[outcome.rung].outputs, "", 0) if not outcome.error else {}
        problem = outcome.error or _parity_problem(figures, ladder.backend, reference)
        progress.note(f"  {ladder.backend}: {problem or 'reproduces the reference'}")
        outcomes.append((outcome, problem, figures))
        if problem:
            problems.append(problem)
    passing = [i for i, (_, problem, _) in enumerate(outcomes) if problem is None]
    if not passing:
        raise ParityError("; ".join(problems) + "; no bundle was written")
    retimed = builder.time_together([outcomes[i][0] for i in passing])  # once, together, in turns
    for i, outcome in zip(passing, retimed):
        outcomes[i] = (outcome, *outcomes[i][1:])
    if speeds_text(retimed):
        progress.note(f"  timed together, in turns: {speeds_text(retimed)}")
    best = passing[fastest_first([outcomes[i][0].p50_ms for i in passing])[0]]
    record = {
        "rungs": [
            {"backend": o.rung.backend, "p50_ms": o.p50_ms, "verdict": "fail" if problem else "pass",
             **({"error": problem} if problem else {}),
             **({k: figures[k] for k in ("max_abs_diff", "top1_agreement")} if figures else {})}
            for o, problem, figures in outcomes
        ],
        "chosen": best,
    }  # fmt: skip
    return outcomes[best][0].rung, record


def compile_bundle(config: CompileConfig, progress: Progress = QUIET) -> Manifest:
    """Build the bundle described by `config` at one precision (`precision_auto` for "auto"); returns its manifest."""
    config = resolve(config)
    validated, backend_options = validate(config)
    threads = resolve_threads(config.threads if config.threads is not None else config.target.threads)
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

    # The FP32 export is scratch work for the backend's build; it lives beside, not inside, the bundle.
    scratch = tempfile.TemporaryDirectory(prefix=f".{config.out.name}.work-", dir=config.out.parent)
    with scratch as work, staged_directory(config.out, config.force) as stage:
        fp32 = Path(work) / "fp32.onnx"
        source.write_onnx(fp32)
        info = inspect_onnx(fp32)
        sparsity = _sparsity_record(source.manifest.get("pruning"), fp32)
        reference_out = run_batched(source.reference.run, inputs, 8, progress, source.reference.kind)
        if evalset is not None and evalset.labels is not None:
            classes = len(source.manifest["classes"])
            warning = labels_warning(evalset.labels, reference_out.argmax(1), classes, "the FP32 model's")
            if warning:
                progress.note(warning)

        labels = evalset.labels if evalset is not None else None
        val = (inputs, reference_out) if config.calib is not None and evalset is not None else None
        images = CheckImages(inputs, reference_out, labels=labels, **_guard_images(calibration, source, val))
        request = ConvertRequest(config.precision, calibration.inputs, config.method, (), config.target.int8_io)
        builder = CandidateBuilder(
            fp32, Path(work), request, config.target, threads, info.batch, source.spec.crop, images, progress
        )
        ladders = [
            BackendLadder(
                c.backend.name,
                c.quantizer_settings(config.precision) if config.method is None else _options_only(c, config),
                c.keeps_layer_groups(config.precision),
            )
            for c in candidates(config)
        ]
        quantization: dict[str, Any] | None = None
        if config.precision == "fp32":
            rung, selection = _choose_fp32(builder, ladders, source.reference.kind, progress)
        else:
            with_budget = config.max_accuracy_drop is not None and labels is not None
            rules = Rules(config.min_agreement or None, (budget or 0.0) if with_budget else None)
            what = (
                "FP32 on held-out images" if images.held_out is not None
                else "FP32, cross-fitted on the calibration images" if images.folds is not None
                else "FP32 (no held-out images)"
            )  # fmt: skip
            progress.note(f"{config.precision} builds, each checked against {what}:")
            outcome, selection = climb(ladders, builder.evaluate, rules, LAYER_GROUPS, progress, builder.time_together)
            rung = outcome.rung
        candidate, runner = builder.install(rung, stage)
        converter = get_converter(rung.backend)
        backend = converter.backend
        if converter is not validated:
            backend_options = converter.backend.parse_options(config.backend_options)
        built = Built(candidate.model_file, candidate.facts, runner, candidate.outputs)
        parity = {
            "reference": source.reference.kind,
            **_parity(reference_out, built.outputs, inputs_source, len(unreadable)),
        }
        if config.precision != "fp32":
            chosen = selection["rungs"][selection["chosen"]]
            quantization = {
                **built.facts,
                "keep_fp32": list(rung.keep_fp32),
                "guard": {
                    "held_out_images": _guard_image_count(images),
                    "held_out_from": _held_out_note(calibration, images),
                    "min_agreement": config.min_agreement,
                    **chosen.get("guard", {}),
                    "verdict": chosen["verdict"],
                    **({"images_needed": chosen["images_needed"]} if chosen.get("images_needed") else {}),
                    **({"note": selection["note"]} if selection.get("note") else {}),
                },
            }
            for key in ("max_abs_diff_allowed", "min_top1_agreement"):  # FP32 parity rules do not apply
                parity.pop(key)
        progress.note(f"chosen: {rung.describe()}")
        shipped_spec, normalisation = source.spec, None
        if config.normalise_in_model:
            shipped_spec, normalisation = fold_normalisation(
                converter, stage, built.model_file, source.spec, (inputs, built.outputs), info.batch, threads, progress
            )
        if config.precision == "fp32" or evalset is not None:
            progress.note(
                f"{'parity' if config.precision == 'fp32' else 'vs FP32'}: max abs diff {parity['max_abs_diff']:.2e}, "
                f"top-1 agreement {parity['top1_agreement']:.2%} on {len(inputs)} "
                f"{'synthetic inputs' if evalset is None else 'images'}"
            )
        # A quantized build's accuracy is said only on real images: the guard's held-out figure (above), not
        # the synthetic inputs, which only show that it runs.
        manifest: dict[str, Any] = {
            "edgekit_version": EDGEKIT_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **source.manifest,
            "source": {
                "path": str(config.model.resolve()),
                "file_name": config.model.name,
                **source.manifest["source"],  # its sha256 included: hashed once, when loaded
            },
            "model": {**source.manifest["model"], "output_kind": info.output_kind},
            "preprocessing": shipped_spec.to_dict(),
            "model_file": built.model_file,
            "input": {
                "name": info.input_name,
                "shape": shipped_spec.input_shape(info.batch),
                "dtype": shipped_spec.input_dtype.__name__,
                "layout": shipped_spec.input_layout,
            },
            "output": {"name": info.output_name, "kind": info.output_kind},
            "onnx_opset": _shipped_opset(stage / built.model_file),
            "precision": config.precision,
            "execution_precision": built.runner.execution_precision(),
            "backend": backend.name,
            "target": config.target.to_dict(),
            "parity": parity,
            "selection": selection,
            "tools": _tool_versions(converter),
        }
        if quantization is not None:
            manifest["quantization"] = quantization
        if sparsity is not None:
            manifest["sparsity"] = sparsity
        if normalisation is not None:
            manifest["normalisation_check"] = normalisation
        samples = (inputs[:16], built.outputs[:16])
        manifest = converter.finish_bundle(
            stage, manifest, config.target, config.out, backend_options, check_device_model, progress, samples
        )
        if source.spec.decode == "fast":
            manifest["preprocessing_check"] = fast_decode_check(
                config.val or config.calib, source.spec, built.runner, progress
            )
        if evalset is not None and evalset.labels is not None:
            predictions = {"reference": reference_out.argmax(1), "bundle": built.outputs.argmax(1)}
            manifest["accuracy"] = score(predictions, evalset.labels, manifest["classes"], reference="reference")
        if manifest["execution_precision"] not in (config.precision, "int8 (float parts f32)"):
            progress.note(
                f"note: {backend.name} computes in {manifest['execution_precision']} on this CPU "
                f"(it lacks {config.precision} arithmetic); the bundle runs reduced precision where the CPU has it"
            )
        written = write_manifest(stage, manifest)
    if source.prune_search is not None:
        source.prune_search.remove()
    return written


def _sparsity_record(pruning: dict[str, Any] | None, fp32: Path) -> dict[str, Any] | None:
    """2:4 weights, re-checked in the exported ONNX: TensorRT targets on Ampere+ build with sparse weights."""
    if not pruning or not pruning.get("sparsity"):
        return None
    from edgekit.optimize.sparsity import PATTERN, onnx_sparse_weights

    sparse, eligible = onnx_sparse_weights(str(fp32))
    if sparse < len(pruning["sparsity"]["layers"]):
        raise EdgekitError(
            f"the model was recorded as {PATTERN} sparse in {len(pruning['sparsity']['layers'])} convolutions but "
            f"only {sparse} of its exported weights follow the pattern; re-create it with `edgekit prune --sparsity`"
        )
    return {
        "pattern": PATTERN,
        "onnx_conv_weights": {"sparse": sparse, "eligible": eligible},
        # TensorRT builds with BuilderFlag.SPARSE_WEIGHTS on Ampere+ (Orin, RTX 30+); see tensorrt/recipe.py.
        "gpu_sparse_weights": "on for Ampere-or-newer GPU targets (sm_80+); dense elsewhere",
        "cpu": "no speed-up: CPU backends compute the zeros like any other weight",
    }


def _shipped_opset(model_file: Path) -> int | None:
    """The opset of the file the bundle ships (quantization may upgrade it); None for OpenVINO IR."""
    if model_file.suffix != ".onnx":
        return None
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _parity_problem(parity: dict[str, Any], backend: str, reference: str) -> str | None:
    if parity["max_abs_diff"] > parity["max_abs_diff_allowed"] or parity["top1_agreement"] < MIN_TOP1_AGREEMENT:
        return (
            f"{backend} does not reproduce the {reference} model: max abs diff "
            f"{parity['max_abs_diff']:.2e} (allowed {parity['max_abs_diff_allowed']:.2e}), top-1 agreement "
            f"{parity['top1_agreement']:.2%} on {parity['images']} inputs"
        )
    return None
