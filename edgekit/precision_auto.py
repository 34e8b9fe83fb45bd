"""`--precision auto`: build every precision the target runs, keep the fastest within the budget.

Speed is measured on this host with the target's own backend (CPU targets, or the GPU target's own
device); where the device is not here, the target file's precision order (fastest first) ranks them.
Accuracy is measured on the user's labelled images; FP32 is always a candidate, so there is always
an answer.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bench.latency import measure
from edgekit.bundle import read_manifest, staged_directory, write_manifest
from edgekit.config import CompileConfig
from edgekit.data.images import has_class_folders
from edgekit.errors import EdgekitError
from edgekit.progress import QUIET, Progress
from edgekit.runtime import BundleModel

DEFAULT_BUDGET_PTS = 1.0


def compile_auto(config: CompileConfig, progress: Progress = QUIET) -> dict[str, Any]:
    from edgekit.compile import compile_bundle
    from edgekit.config import validate

    if not has_class_folders(config.val):
        raise EdgekitError("--precision auto needs --val DIR with one sub-directory of images per class")
    validate(dataclasses.replace(config, precision="fp32"))
    budget = DEFAULT_BUDGET_PTS if config.max_accuracy_drop is None else config.max_accuracy_drop
    if config.max_accuracy_drop is None:
        progress.note(f"--precision auto: no --max-accuracy-drop given, using {budget:g} top-1 points")
    untimed = _device_absent(config)
    if untimed:
        progress.note(
            f"--precision auto: {untimed}, so speed cannot be timed here; the target's own order "
            f"({', '.join(config.target.precisions)}) ranks the precisions that fit the budget"
        )
    candidates: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix=f".{config.out.name}.auto-", dir=config.out.parent) as work:
        for precision in config.target.precisions:
            out = Path(work) / precision
            trial = dataclasses.replace(
                config,
                precision=precision,
                out=out,
                force=False,
                max_accuracy_drop=None if precision == "fp32" else budget,
            )
            progress.note(f"--precision auto: building {precision}")
            try:
                manifest = compile_bundle(trial, progress)
            except EdgekitError as exc:
                candidates.append({"precision": precision, "rejected": str(exc)})
                continue
            p50 = None if untimed else _p50_ms(out, config.threads)
            models = manifest["accuracy"]["models"]
            drop = (models["reference"]["top1"] - models["bundle"]["top1"]) * 100.0
            candidates.append(
                {"precision": precision, "p50_ms": p50, "drop_pts": drop, "within_budget": drop <= budget}
            )
            speed = "not timed here" if p50 is None else f"p50 {p50:.2f} ms"
            progress.note(f"  {precision}: {speed}, top-1 drop {drop:.2f} pts")
        eligible = [c for c in candidates if c.get("within_budget") or c["precision"] == "fp32"]
        order = list(config.target.precisions)  # the target file lists its precisions fastest first
        chosen = min(eligible, key=lambda c: order.index(c["precision"]) if untimed else c["p50_ms"])
        progress.note(f"--precision auto chose {chosen['precision']}")
        with staged_directory(config.out, config.force) as stage:
            source = Path(work) / chosen["precision"]
            manifest = read_manifest(source, verify=True)
            for item in source.iterdir():
                if item.name != "manifest.json":
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, stage / item.name)
            record = {"budget_pts": budget, "chosen": chosen["precision"], "candidates": candidates}
            if untimed:
                record["ranked_by"] = f"target file order ({untimed})"
            return write_manifest(stage, {**manifest, "precision_auto": record})


def _p50_ms(bundle: Path, threads: int | None) -> float:
    model = BundleModel.open(bundle, threads=threads)
    crop = model.preprocessing.crop
    return measure(model.runner.run, np.zeros((1, 3, crop, crop), np.float32), warmup=5, iterations=30)["p50_ms"]


def _device_absent(config: CompileConfig) -> str | None:
    """Why a GPU target's engine cannot be timed on this machine, or None."""
    if config.target.kind != "gpu":
        return None
    from edgekit.engine_build import device_problem

    return device_problem(config.target)
