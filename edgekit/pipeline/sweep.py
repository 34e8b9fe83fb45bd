"""`edgekit sweep`: every precision × pruning ratio of one model, built, benchmarked in one run, reported.

    prune (cached per ratio) ─► compile (cached per variant) ─► bench all against one FP32 reference ─► report

Builds are cached under OUT by a content hash of everything that shapes them (model bytes, target,
precision, ratio, image folders, edgekit version), so adding a variant rebuilds only that variant.
Benchmarks are never cached: numbers compared in one report are measured in one run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.core.files import sha256_file, writable_directory_problem
from edgekit.core.progress import QUIET, Progress
from edgekit.core.versions import EDGEKIT_VERSION
from edgekit.data.images import has_class_folders
from edgekit.measure.decide import DEFAULT_MAX_DROP_PTS
from edgekit.measure.host import resolve_target
from edgekit.measure.latency import PROTOCOL
from edgekit.optimize.prune_config import PruneSettings, validate_settings
from edgekit.pipeline.bench import BenchConfig, run_bench
from edgekit.pipeline.compile import compile_bundle
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.report.write import write_report
from edgekit.targets import Target


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    model: Path
    target: Target | str | None  # a Target, name or TOML path; None: this host's (resolved by run_sweep)
    val: Path  # labelled images: accuracy of every variant and of the FP32 reference
    out: Path
    precisions: tuple[str, ...] = ("fp32", "int8")
    prune_ratios: tuple[float, ...] = (0.0,)
    calib: Path | None = None
    recover_data: Path | None = None
    recover_epochs: int | None = None
    max_accuracy_drop: float = DEFAULT_MAX_DROP_PTS
    iterations: int = PROTOCOL.iterations
    threads: int | None = None
    trust_pickle: bool = False


def validate(config: SweepConfig) -> None:
    if not config.model.is_file():
        raise EdgekitError(f"{config.model} does not exist or is not a file")
    if not has_class_folders(config.val):
        raise EdgekitError(f"--val {config.val} must be a directory with one sub-directory of images per class")
    unknown = [p for p in config.precisions if p not in config.target.precisions]
    if unknown or not config.precisions:
        raise EdgekitError(
            f"--precisions {','.join(config.precisions)}: target {config.target.name} runs "
            f"{', '.join(config.target.precisions)}"
        )
    if any(not 0 <= r < 1 for r in config.prune_ratios) or not config.prune_ratios:
        raise EdgekitError("--prune-ratio takes ratios in [0, 1), e.g. 0,0.3,0.5 (0 = unpruned)")
    if any(r > 0 for r in config.prune_ratios) and config.model.suffix.lower() == ".onnx":
        raise EdgekitError("pruning needs a PyTorch checkpoint; an ONNX model can only be swept with --prune-ratio 0")
    for flag, folder in (("--calib", config.calib), ("--recover-data", config.recover_data)):
        if folder is not None and not folder.is_dir():
            raise EdgekitError(f"{flag} {folder} is not a directory")
    if config.max_accuracy_drop < 0 or config.iterations < 1:
        raise EdgekitError("--max-accuracy-drop must be >= 0 and --iterations at least 1")
    if len({_ratio_label(r) for r in config.prune_ratios}) != len(config.prune_ratios):
        raise EdgekitError("--prune-ratio lists the same ratio twice (ratios are compared in whole percent)")
    pruned = [r for r in config.prune_ratios if r > 0]
    if pruned:  # a mistake shared by every pruned variant is one error now, not N skipped variants later
        validate_settings(_prune_settings(config, pruned[0]), has_val=True)
    problem = writable_directory_problem(config.out)
    if problem:
        raise EdgekitError(f"cannot write the sweep to {config.out}: {problem}")


def _prune_settings(config: SweepConfig, ratio: float) -> PruneSettings:
    return PruneSettings(ratio=ratio, recover_data=config.recover_data, recover_epochs=config.recover_epochs)


def _target_identity(target: Target) -> dict[str, Any]:
    """What a target means, not where its file was read from (a path spelling must not rebuild a sweep)."""
    return {k: v for k, v in target.to_dict().items() if k != "source"}


def _folder_fingerprint(folder: Path | None) -> str | None:
    """Names, sizes and modification times of every file: cheap, and changes when the images do."""
    if folder is None:
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _ratio_label(ratio: float) -> str:
    return f"prune{round(ratio * 100):02d}"


@dataclasses.dataclass
class _Plan:
    name: str
    precision: str
    ratio: float
    directory: Path


def _cached_bundle(directory: Path) -> bool:
    from edgekit.runtime.bundle import read_manifest

    try:
        read_manifest(directory / "bundle", verify=True)
        return True
    except EdgekitError:
        return False


def _pruned_checkpoint(
    config: SweepConfig, ratio: float, model_sha: str, folders: dict[str, str | None], progress: Progress
) -> Path:
    from edgekit.optimize.prune_config import PruneConfig
    from edgekit.pipeline.prune import run_prune

    settings = _prune_settings(config, ratio)
    key = _key(
        {
            "model": model_sha,
            "settings": {**settings.to_dict(), "recover_data": None},  # the folder's content counts, not its path
            "target": _target_identity(config.target),  # latency figures in the pruning record are the target's
            "recover_data": folders["recover_data"],
            "val": folders["val"],
            "edgekit": EDGEKIT_VERSION,
        }
    )
    path = config.out / "pruned" / f"{_ratio_label(ratio)}-{key}.pt"
    if path.is_file():
        progress.note(f"pruned {ratio:.0%}: cached ({path.name})")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    progress.note(f"pruning {ratio:.0%}")
    prune_config = PruneConfig(
        config.model,
        path,
        settings,
        config.target,
        val=config.val,
        threads=config.threads,
        trust_pickle=config.trust_pickle,
    )
    run_prune(prune_config, progress)
    return path


def _plans(config: SweepConfig, model_sha: str, folders: dict[str, str | None]) -> Iterable[_Plan]:
    for ratio in config.prune_ratios:
        for precision in config.precisions:
            quantized = precision != "fp32"  # calibration and the budget only shape quantized builds
            key = _key(
                {
                    "model": model_sha,
                    "target": _target_identity(config.target),
                    "precision": precision,
                    "ratio": ratio,
                    "recover": [folders["recover_data"], config.recover_epochs] if ratio else None,
                    "calib": folders["calib"] if quantized else None,
                    "val": folders["val"],
                    "budget": config.max_accuracy_drop if quantized else None,
                    "edgekit": EDGEKIT_VERSION,
                }
            )
            name = f"{precision}-{_ratio_label(ratio)}"
            yield _Plan(name, precision, ratio, config.out / "variants" / f"{name}-{key}")


# Benchmarks every config somewhere else (`edgekit sweep --device`): (results files, failures by place).
BenchElsewhere = Callable[[list[BenchConfig]], tuple[list[Path], dict[str, str]]]


def run_sweep(
    config: SweepConfig, progress: Progress = QUIET, bench_elsewhere: BenchElsewhere | None = None
) -> dict[str, Any]:
    """Build every variant here; benchmark them here, or with `bench_elsewhere` (on devices: there the FP32
    PyTorch reference cannot run, so latencies are the bundles' own, labelled with where they were measured)."""

    config = dataclasses.replace(config, target=resolve_target(config.target))
    validate(config)
    model_sha = sha256_file(config.model)
    built, reused, failed = [], [], {}
    pruned: dict[float, Path] = {}
    prune_errors: dict[float, str] = {}  # a ratio that failed once is not pruned again for each precision
    # Fingerprinted once: every file of every folder is stat'ed, and every plan's key needs them.
    folders = {
        "val": _folder_fingerprint(config.val),
        "calib": _folder_fingerprint(config.calib),
        "recover_data": _folder_fingerprint(config.recover_data),
    }
    plans = list(_plans(config, model_sha, folders))
    for plan in plans:
        if _cached_bundle(plan.directory):
            reused.append(plan.name)
            continue
        if plan.ratio in prune_errors:
            failed[plan.name] = prune_errors[plan.ratio]
            continue
        try:
            source = config.model
            if plan.ratio > 0:
                if plan.ratio not in pruned:
                    try:
                        pruned[plan.ratio] = _pruned_checkpoint(config, plan.ratio, model_sha, folders, progress)
                    except EdgekitError as exc:
                        prune_errors[plan.ratio] = f"pruning failed: {exc}"
                        raise
                source = pruned[plan.ratio]
            progress.note(f"building {plan.name}")
            compile_config = CompileConfig(
                model=source,
                target=config.target,
                out=plan.directory / "bundle",
                precision=plan.precision,
                force=True,
                val=config.val,
                calib=config.calib,
                threads=config.threads,
                trust_pickle=config.trust_pickle,
                max_accuracy_drop=None if plan.precision == "fp32" else config.max_accuracy_drop,
            )
            plan.directory.mkdir(parents=True, exist_ok=True)
            compile_bundle(compile_config, progress)
            built.append(plan.name)
        except EdgekitError as exc:  # one variant that cannot be built must not sink the others
            failed[plan.name] = str(exc)
            progress.note(f"warning: {plan.name} not built: {exc}")
    ready = [plan for plan in plans if plan.name not in failed]
    if not ready:
        raise EdgekitError(f"no variant could be built: {'; '.join(f'{k}: {v}' for k, v in failed.items())}")
    if bench_elsewhere is not None:
        configs = [
            BenchConfig(bundle=plan.directory / "bundle", val=config.val, iterations=config.iterations,
                        threads=config.threads, out=plan.directory / "bench")
            for plan in ready
        ]  # fmt: skip
        results, lost = bench_elsewhere(configs)
        for place, problem in lost.items():
            progress.note(f"warning: {place}: {problem}")
        if not results:
            raise EdgekitError(f"no variant could be benchmarked: {'; '.join(f'{k}: {v}' for k, v in lost.items())}")
        report = write_report(results, config.out / "report", config.max_accuracy_drop)
        return {"built": built, "reused": reused, "failed": failed, "lost": lost,
                "results": [str(r) for r in results], "report": report}  # fmt: skip
    results = []
    for plan in ready:
        progress.note(f"benchmarking {plan.name}")
        bench = BenchConfig(
            bundle=plan.directory / "bundle",
            reference=config.model if config.model.suffix.lower() != ".onnx" else None,
            val=config.val,
            iterations=config.iterations,
            threads=config.threads,
            trust_pickle=config.trust_pickle,
            out=plan.directory / "bench",
        )
        run_bench(bench, progress)
        results.append(plan.directory / "bench" / "bench.json")
    report = write_report(results, config.out / "report", config.max_accuracy_drop)
    return {"built": built, "reused": reused, "failed": failed, "results": [str(r) for r in results], "report": report}
