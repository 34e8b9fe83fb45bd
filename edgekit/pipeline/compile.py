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
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Converter, ConvertRequest, QuantizerSetting
from edgekit.backends.converters import get_converter
from edgekit.backends.registry import reference_backend
from edgekit.core.errors import EdgekitError, ParityError
from edgekit.core.progress import QUIET, Progress
from edgekit.core.threads import resolve_threads
from edgekit.data.calibration import CalibrationSet
from edgekit.export.onnx_file import OnnxInfo, inspect_onnx, layer_groups
from edgekit.measure.decide import fastest_first
from edgekit.measure.evaluate import compare, labels_warning, run_batched, score
from edgekit.optimize.ladder import BackendLadder, Rules, Rung, climb, speeds_text
from edgekit.pipeline.candidates import SENSITIVITY_IMAGES, CandidateBuilder, CheckImages
from edgekit.pipeline.compile_config import CompileConfig, candidates, resolve, validate
from edgekit.pipeline.compile_source import LoadedSource, Prepared, prepare
from edgekit.pipeline.device_build import check_device_model
from edgekit.pipeline.manifest_draft import ManifestDraft
from edgekit.pipeline.preprocess_checks import fast_decode_check, fold_normalisation
from edgekit.runtime.bundle import staged_directory, write_manifest
from edgekit.runtime.manifest import Manifest
from edgekit.runtime.model import Runner

MIN_TOP1_AGREEMENT = 0.995


def parity_tolerance(reference: np.ndarray) -> float:
    """FP32 runtimes reorder sums, so outputs differ by rounding: allow 1e-3 relative to their scale."""
    return 1e-3 * max(1.0, float(np.max(np.abs(reference))))


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
    """Build the bundle described by `config` at one precision (`precision_auto` for "auto"); returns its manifest.

    Stages: prepare (load → transform_input → images → prune) → check images (the FP32 export and its outputs)
    → candidates and the one selected → install → the manifest draft → the backend's finish → write."""
    config = resolve(config)
    validated, backend_options = validate(config)
    threads = resolve_threads(config.threads if config.threads is not None else config.target.threads)
    prepared = prepare(config, threads, progress)
    # The FP32 export is scratch work for the backend's build; it lives beside, not inside, the bundle.
    scratch = tempfile.TemporaryDirectory(prefix=f".{config.out.name}.work-", dir=config.out.parent)
    with scratch as work, staged_directory(config.out, config.force) as stage:
        checks = _check_images(config, prepared, Path(work), progress)
        builder = CandidateBuilder(
            checks.fp32, Path(work), checks.request, config.target, threads, checks.info.batch,
            prepared.source.spec.crop, checks.images, progress,
        )  # fmt: skip
        rung, selection = _select(config, prepared, checks, builder, progress)
        candidate, runner = builder.install(rung, stage)
        progress.note(f"chosen: {rung.describe()}")
        converter = get_converter(rung.backend)
        if converter is not validated:
            backend_options = converter.backend.parse_options(config.backend_options)
        built = Built(candidate.model_file, candidate.facts, runner, candidate.outputs)
        draft = _draft(config, prepared, checks, rung, selection, built, converter, stage, threads, progress)
        samples = (prepared.inputs[:16], built.outputs[:16])
        draft = converter.finish_bundle(
            stage, draft, config.target, config.out, backend_options, check_device_model, progress, samples
        )
        written = write_manifest(stage, _measured(config, prepared, checks, built, draft, progress))
    if prepared.source.prune_search is not None:
        prepared.source.prune_search.remove()
    return written


@dataclasses.dataclass
class Checks:
    """The FP32 export and what every candidate is checked against."""

    fp32: Path
    info: OnnxInfo
    reference_out: np.ndarray  # FP32's outputs on `Prepared.inputs`
    images: CheckImages
    request: ConvertRequest
    sparsity: dict[str, Any] | None


def _check_images(config: CompileConfig, prepared: Prepared, work: Path, progress: Progress) -> Checks:
    """The FP32 ONNX export, FP32's outputs on the parity/--val images, and the guard's images."""
    source = prepared.source
    fp32 = work / "fp32.onnx"
    source.write_onnx(fp32)
    info = inspect_onnx(fp32)
    sparsity = _sparsity_record(source.manifest.get("pruning"), fp32)
    reference_out = run_batched(source.reference.run, prepared.inputs, 8, progress, source.reference.kind)
    labels = prepared.labels
    if labels is not None:
        classes = len(source.manifest["classes"])
        warning = labels_warning(labels, reference_out.argmax(1), classes, "the FP32 model's")
        if warning:
            progress.note(warning)
    val = (prepared.inputs, reference_out) if config.calib is not None and prepared.evalset is not None else None
    guard = _guard_images(prepared.calibration, source, val)
    images = CheckImages(prepared.inputs, reference_out, labels=labels, **guard)
    calibration = prepared.calibration.inputs
    request = ConvertRequest(config.precision, calibration, config.method, (), config.target.int8_io)
    return Checks(fp32, info, reference_out, images, request, sparsity)


def _select(
    config: CompileConfig, prepared: Prepared, checks: Checks, builder: CandidateBuilder, progress: Progress
) -> tuple[Rung, dict[str, Any]]:
    """The rung that ships and the record of every build tried: FP32's fastest faithful backend, or the
    accuracy guard's ladder."""
    ladders = [
        BackendLadder(
            c.backend.name,
            c.quantizer_settings(config.precision) if config.method is None else _options_only(c, config),
            c.keeps_layer_groups(config.precision),
        )
        for c in candidates(config)
    ]
    if config.precision == "fp32":
        return _choose_fp32(builder, ladders, prepared.source.reference.kind, progress)
    with_budget = config.max_accuracy_drop is not None and prepared.labels is not None
    rules = Rules(config.min_agreement or None, (prepared.budget or 0.0) if with_budget else None)
    images = checks.images
    what = (
        "FP32 on held-out images" if images.held_out is not None
        else "FP32, cross-fitted on the calibration images" if images.folds is not None
        else "FP32 (no held-out images)"
    )  # fmt: skip
    progress.note(f"{config.precision} builds, each checked against {what}:")
    groups = layer_groups(checks.fp32)  # the model's own blocks, in forward order
    outcome, selection = climb(ladders, builder.evaluate, rules, groups, progress, builder.time_together)
    return outcome.rung, selection


def _draft(
    config: CompileConfig,
    prepared: Prepared,
    checks: Checks,
    rung: Rung,
    selection: dict[str, Any],
    built: Built,
    converter: type[Converter],
    stage: Path,
    threads: int,
    progress: Progress,
) -> dict[str, Any]:
    """The manifest as the pipeline knows it (`ManifestDraft`), before the backend's finish adds its part."""
    source, info = prepared.source, checks.info
    parity = {
        "reference": source.reference.kind,
        **_parity(checks.reference_out, built.outputs, prepared.inputs_source, len(prepared.unreadable)),
    }
    quantization = None
    if config.precision != "fp32":
        quantization = _quantization_record(config, prepared, checks, rung, selection, built)
        for key in ("max_abs_diff_allowed", "min_top1_agreement"):  # FP32 parity rules do not apply
            parity.pop(key)
    shipped_spec, normalisation = source.spec, None
    if config.normalise_in_model:
        shipped_spec, normalisation = fold_normalisation(
            converter, stage, built.model_file, source.spec, (prepared.inputs, built.outputs), info.batch, threads,
            progress,
        )  # fmt: skip
    if config.precision == "fp32" or prepared.evalset is not None:
        # A quantized build's accuracy is said only on real images: the guard's figure (above), not synthetic
        # inputs, which only show that it runs.
        progress.note(
            f"{'parity' if config.precision == 'fp32' else 'vs FP32'}: max abs diff {parity['max_abs_diff']:.2e}, "
            f"top-1 agreement {parity['top1_agreement']:.2%} on {len(prepared.inputs)} "
            f"{'synthetic inputs' if prepared.evalset is None else 'images'}"
        )
    return ManifestDraft(
        source=source.manifest,
        source_path=config.model,
        spec=shipped_spec,
        info=info,
        model_file=built.model_file,
        onnx_opset=_shipped_opset(stage / built.model_file),
        precision=config.precision,
        execution_precision=built.runner.execution_precision(),
        backend=converter.backend.name,
        target=config.target,
        parity=parity,
        selection=selection,
        tools=_tool_versions(converter),
        quantization=quantization,
        sparsity=checks.sparsity,
        normalisation_check=normalisation,
    ).to_dict()


def _quantization_record(
    config: CompileConfig, prepared: Prepared, checks: Checks, rung: Rung, selection: dict[str, Any], built: Built
) -> dict[str, Any]:
    final = selection["final"]  # the chosen build judged on images that took no part in choosing it
    return {
        **built.facts,
        "keep_fp32": list(rung.keep_fp32),
        "guard": {
            "held_out_images": _guard_image_count(checks.images),
            "held_out_from": _held_out_note(prepared.calibration, checks.images),
            "min_agreement": config.min_agreement,
            **final.get("guard", {}),
            "judged_on": final["judged_on"],
            "verdict": final["verdict"],
            **({"images_needed": final["images_needed"]} if final.get("images_needed") else {}),
            **({"note": selection["note"]} if selection.get("note") else {}),
        },
    }


def _measured(
    config: CompileConfig,
    prepared: Prepared,
    checks: Checks,
    built: Built,
    manifest: dict[str, Any],
    progress: Progress,
) -> dict[str, Any]:
    """The shipped build's checks on the user's images, added to the finished manifest: the fast decode's
    agreement, and --val's accuracy against FP32."""
    spec = prepared.source.spec
    if spec.decode == "fast":
        manifest["preprocessing_check"] = fast_decode_check(config.val or config.calib, spec, built.runner, progress)
    labels = prepared.labels
    if labels is not None:
        predictions = {"reference": checks.reference_out.argmax(1), "bundle": built.outputs.argmax(1)}
        manifest["accuracy"] = score(predictions, labels, manifest["classes"], reference="reference")
    if manifest["execution_precision"] not in (config.precision, "int8 (float parts f32)"):
        progress.note(
            f"note: {manifest['backend']} computes in {manifest['execution_precision']} on this CPU "
            f"(it lacks {config.precision} arithmetic); the bundle runs reduced precision where the CPU has it"
        )
    return manifest


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
