"""`edgekit bench`: a bundle against its FP32 PyTorch reference, timed in the same run.

Latency is measured on the same synthetic batch for both (values do not change the work done);
accuracy and top-1 agreement on the user's labelled images.
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekit.backends.registry import get_backend
from edgekit.core.errors import EdgekitError
from edgekit.core.files import sha256_file, writable_directory_problem
from edgekit.core.progress import QUIET, Progress
from edgekit.core.threads import resolve_threads
from edgekit.core.versions import module_available
from edgekit.data.batches import sample, synthetic_images
from edgekit.data.images import collect_images, read_image
from edgekit.data.preprocess import PreprocessSpec, float_input
from edgekit.measure.endtoend import end_to_end
from edgekit.measure.environment import environment
from edgekit.measure.evaluate import labels_warning, load_eval_set, run_batched, score
from edgekit.measure.host import measured_on
from edgekit.measure.latency import PROTOCOL, Timing, TimingProtocol, time_in_turns, time_runs
from edgekit.measure.reference import load_reference
from edgekit.measure.results import RESULTS_SCHEMA, write_results
from edgekit.runtime.manifest import Manifest
from edgekit.runtime.model import BundleModel, default_decode_workers, to_probabilities
from edgekit.targets import target_from_record

STAGE_IMAGES = 30
THROUGHPUT_IMAGES = 128
THROUGHPUT_ROUNDS = 3  # the median of three passes over the stream


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    bundle: Path
    reference: Path | None = None  # None: the bundle's source model, if it is still where it was
    val: Path | None = None
    batch_sizes: tuple[int, ...] = (1, 8)
    warmup: int = PROTOCOL.warmup
    iterations: int = PROTOCOL.iterations
    threads: int | None = None
    max_images: int | None = None
    trust_pickle: bool = False
    out: Path | None = None  # None: <bundle>.bench beside the bundle
    images: Path | None = None  # encoded images for the end-to-end timing (default: --val's)
    throughput: bool = False  # also images/s from files through the decode pool
    class_names: tuple[str, ...] | None = None  # --classes: output names to match --val's folders by
    find_reference: bool = True  # False (`--no-reference`, a bench on a device): no FP32 reference at all
    run_options: dict[str, Any] | None = None  # the backends' run options (`Backend.options`), by name

    def results_dir(self) -> Path:
        return self.out or self.bundle.with_name(self.bundle.name + ".bench")


def _class_names(config: BenchConfig, recorded: Sequence[str]) -> Sequence[str]:
    """The names --val's sub-directories are matched by: --classes where given, else the bundle's."""
    if config.class_names is None:
        return recorded
    if len(config.class_names) != len(recorded):
        raise EdgekitError(
            f"--classes lists {len(config.class_names)} names but the bundle has {len(recorded)} outputs"
        )
    return config.class_names


def _validate(config: BenchConfig) -> None:
    if not config.batch_sizes or min(config.batch_sizes) < 1:
        raise EdgekitError("--batch-sizes must be positive integers, e.g. 1,8")
    if config.iterations < 1 or config.warmup < 0:
        raise EdgekitError("--iterations must be at least 1 and --warmup at least 0")
    if config.reference is not None and not config.reference.is_file():
        raise EdgekitError(f"--reference {config.reference} does not exist")
    if config.val is not None and not config.val.is_dir():
        raise EdgekitError(f"--val {config.val} is not a directory")
    if config.images is not None and not collect_images([config.images]):
        raise EdgekitError(f"--images {config.images} holds no image files")
    out = config.results_dir()
    problem = writable_directory_problem(out)
    if problem:
        raise EdgekitError(f"cannot write results to {out}: {problem}")


def _find_reference(config: BenchConfig, manifest: Manifest, notes: list[str]) -> Path | None:
    if config.reference is not None:
        return config.reference
    if not config.find_reference:
        notes.append("no FP32 reference (--no-reference)")
        return None
    # A bundle of a pruned checkpoint is compared with the model it was pruned from: the FP32 original.
    candidates = [(manifest.source, "the bundle's source model")]
    if manifest.original is not None:
        candidates.insert(0, (manifest.original, "the original model it was pruned from"))
    for candidate, what in candidates:
        source = Path(candidate.path)
        # What loading it as a reference needs (a device install has neither).
        onnx_file = source.suffix.lower() == ".onnx"
        kind, runtime = ("an ONNX file", "onnx") if onnx_file else ("a PyTorch checkpoint", "torch")
        if not module_available(runtime):
            notes.append(f"no FP32 reference: {what} is {kind} and {runtime} is not installed here")
            return None
        if source.is_file() and sha256_file(source) == candidate.sha256:
            notes.append(f"reference: {what} {source}")
            return source
    notes.append("no FP32 reference: pass --reference CHECKPOINT to time and compare against it")
    return None


def run_bench(config: BenchConfig, progress: Progress = QUIET) -> dict[str, Any]:
    _validate(config)
    model = BundleModel.open(config.bundle, threads=config.threads, options=config.run_options)
    manifest = model.manifest
    threads = resolve_threads(config.threads if config.threads is not None else manifest.threads)
    notes: list[str] = []
    reference_path = _find_reference(config, manifest, notes)
    reference = None
    if reference_path is not None:
        recorded_arch = manifest.section("model").get("arch")
        reference = load_reference(
            reference_path, threads, manifest.transform_input, trust_pickle=config.trust_pickle,
            arch=recorded_arch if isinstance(recorded_arch, str) else None,
        )  # fmt: skip
    if manifest.input.batch == 1 and max(config.batch_sizes) > 1:
        notes.append("the model has a fixed batch of 1: larger batches run as one call per image")

    spec = model.preprocessing
    protocol = TimingProtocol(warmup=config.warmup, iterations=config.iterations)
    rng = np.random.default_rng(0)
    latency: dict[str, list[dict[str, Any]]] = {"bundle": [], "reference": []}
    network_timings: dict[int, Timing] = {}
    for size in config.batch_sizes:
        pixels = rng.integers(0, 256, (size, spec.crop, spec.crop, 3), dtype=np.uint8)
        floats = float_input(pixels, spec)  # the reference takes float input whatever the bundle takes
        runs, inputs = [model.runner.run], [pixels if spec.normalise_in_model else floats]
        if reference is not None:
            runs, inputs = [*runs, reference.run], [*inputs, floats]  # in turns: the speed-up carries no drift
        device = [lambda: {"device_compute_ms": model.runner.device_ms()}]  # the GPU's own time, where it has one
        timings = time_runs(runs, inputs, protocol, device, progress, f"batch {size}")
        network_timings[size] = timings[0]
        latency["bundle"].append(timings[0].to_dict())
        if len(timings) > 1:
            latency["reference"].append(timings[1].to_dict())

    accuracy = None
    if config.val is not None:
        names = _class_names(config, model.class_names)
        evalset = load_eval_set(config.val, names, spec, config.max_images, progress)
        if evalset.labels is None:
            raise EdgekitError(f"--val {config.val} has no class sub-directories, so accuracy cannot be measured")
        predictions = {"bundle": run_batched(model.runner.run, evalset.batch.inputs, 8, progress, "bundle").argmax(1)}
        if reference is not None:
            floats = float_input(evalset.batch.inputs, spec)
            outputs = run_batched(reference.run, floats, 8, progress, "reference")
            predictions = {"reference": outputs.argmax(1), **predictions}
        if evalset.mapping:
            notes.append(evalset.mapping)
        accuracy = score(predictions, evalset.labels, names, reference=next(iter(predictions)))
        first = predictions[accuracy["reference"]]
        warning = labels_warning(evalset.labels, first, len(model.class_names), f"the {accuracy['reference']}'s")
        if warning:
            notes.append(warning)
            progress.note(warning)
        accuracy["unreadable"] = evalset.batch.errors

    with tempfile.TemporaryDirectory() as scratch:
        files, files_from = _stage_files(config, spec, Path(scratch))
        progress.note(f"end to end: {len(files)} encoded images from {files_from}, batch 1, exact and fast decode")
        trip = end_to_end(
            files,
            spec,
            model.runner.run,
            lambda outputs: np.argsort(-to_probabilities(outputs, model.output_kind), axis=1)[:, :5],
        )
        stages = {**trip.get(spec.decode, {}), "from": files_from, "image_size": trip.get("image_size")}
        end_to_end_record = {**trip, "from": files_from, "shipped_decode": spec.decode} if trip else None
        gpu_stages = _gpu_stage_times(model, files[:STAGE_IMAGES])
        if gpu_stages:
            stages = {**stages, "gpu": gpu_stages}
        throughput = _throughput(model, files, config, network_timings, progress) if config.throughput else None
    first = latency["bundle"][0]
    speedups = {str(b["batch"]): r["p50_ms"] / b["p50_ms"] for b, r in zip(latency["bundle"], latency["reference"])}
    results = {
        "schema_version": RESULTS_SCHEMA,
        "kind": "edgekit-bench",
        "p50_ms": first["p50_ms"] if first["batch"] == 1 else None,
        "model_id": model_identity(manifest),
        "classes": list(model.class_names),
        "bundle": {
            "path": str(config.bundle.resolve()),
            "model_sha256": manifest.files[manifest.model_file],
            "source_sha256": manifest.source.sha256,
            "source_file": manifest.source.file_name,
            "target": manifest.target_name,
            "target_kind": manifest.target_kind,
            "backend": model.backend,
            "precision": manifest.precision,
            "execution_precision": manifest.execution_precision,
            "input": manifest.section("input"),
            "model_bytes": sum((config.bundle / name).stat().st_size for name in manifest.files),
            "keep_fp32": manifest.section("quantization").get("keep_fp32"),
            "pruning": _pruning_summary(manifest.section("pruning")),
            "sparsity": manifest.section("sparsity") or None,
        },
        "measured_on": measured_on(target_from_record(manifest.section("target")), get_backend(model.backend)),
        "stages": stages,
        "end_to_end": end_to_end_record,
        "throughput": throughput,
        "reference": (
            {"path": str(reference_path), "kind": reference.kind, "sha256": sha256_file(reference_path)}
            if reference and reference_path
            else None
        ),
        "latency": latency,
        "speedup_p50_vs_reference": speedups,
        "accuracy": accuracy,
        "environment": {**environment(threads), **get_backend(model.backend).environment()},
        "notes": notes,
    }
    write_results(results, config.results_dir())
    return results


def _gpu_stage_times(model: BundleModel, files: list[Path]) -> dict[str, float] | None:
    """Median CUDA-event time of each stage, one image at a time through the GPU preprocessing kernel, by the
    one timing loop (each call the next file's image). The files are decoded only where the backend has that
    kernel (a CPU backend says so on the first)."""
    if model.runner.run_images([read_image(files[0])], model.preprocessing) is None:
        return None
    images = itertools.cycle([read_image(file) for file in files])
    protocol = TimingProtocol(warmup=3, iterations=len(files))  # the warm-up: table upload, lazy init
    timing = time_in_turns(
        [lambda: model.runner.run_images([next(images)], model.preprocessing)], protocol, after=[model.runner.stage_ms]
    )[0]
    return {stage: float(np.median(values)) for stage, values in timing.extra.items()}


def model_identity(manifest: Manifest) -> str:
    """The sha256 of the user's original model: the same for every variant pruned or quantized from it."""
    return (manifest.original or manifest.source).sha256


def _pruning_summary(pruning: dict[str, Any] | None) -> dict[str, Any] | None:
    if not pruning:
        return None
    keep = ("mode", "ratio", "macs_removed", "before", "after", "channels", "top1", "accuracy", "search")
    return {key: pruning.get(key) for key in keep}


def _stage_files(config: BenchConfig, spec: PreprocessSpec, scratch: Path) -> tuple[list[Path], str]:
    """Encoded files for the end-to-end timing: --images, else --val's, else camera-sized synthetic JPEGs."""
    for folder in (config.images, config.val):
        if folder is not None:
            files = sample(collect_images([folder]), STAGE_IMAGES)
            if files:
                return files, str(folder)
    files = []
    for index, image in enumerate(synthetic_images(8, 1280, 960)):
        files.append(scratch / f"synthetic-{index}.jpg")
        image.save(files[-1], quality=90)
    return files, "synthetic 1280×960 JPEGs (pass --images DIR for your own)"


def _throughput(
    model: BundleModel, files: list[Path], config: BenchConfig, network: dict[int, Timing], progress: Progress
) -> dict[str, Any]:
    """Images/s from encoded files through `iter_predict` (decoding overlapped with the network) against the
    network's own images/s at the same batch size: the one timing loop, each call the whole stream."""
    batch = max(config.batch_sizes)
    stream = [files[i % len(files)] for i in range(max(THROUGHPUT_IMAGES, len(files)))]

    def run_stream() -> int:
        return sum(1 for _ in model.iter_predict(stream, batch_size=batch))

    protocol = TimingProtocol(warmup=1, iterations=THROUGHPUT_ROUNDS)  # the warm-up: threads, lazy init
    timing = time_in_turns([run_stream], protocol, [len(stream)], progress=progress, desc="throughput")[0]
    record = {
        "batch": batch,
        "images": len(stream),
        "rounds": timing.n,
        "decode_workers": default_decode_workers(),
        "images_per_s": timing.images_per_s,
        "network_images_per_s": network[batch].images_per_s,
    }
    record["ratio"] = record["images_per_s"] / record["network_images_per_s"]
    progress.note(
        f"throughput: {record['images_per_s']:.1f} images/s from files vs {record['network_images_per_s']:.1f} "
        f"for the network alone at batch {batch} ({record['ratio']:.2f}×)"
    )
    return record
