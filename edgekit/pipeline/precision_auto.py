"""`--precision auto`: compile every precision the target runs, keep the fastest within the budget.

Speed is measured on this host with each precision's own backend where this host is the target's device
(`measure/host.py`); where it is not, the target file's precision order (fastest first) ranks them.
Accuracy is measured on the user's labelled images; FP32 is always a candidate, so there is always an
answer. This module calls `compile_bundle`; compile never calls back.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgekit.backends.registry import get_backend
from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.data.images import has_class_folders
from edgekit.measure.decide import DEFAULT_MAX_DROP_PTS, Budget, fastest_that_ships
from edgekit.measure.host import host_problem
from edgekit.measure.latency import blank_input, time_runs
from edgekit.measure.stats import PairedDifference
from edgekit.pipeline.compile import compile_bundle
from edgekit.pipeline.compile_config import CompileConfig, resolve, validate
from edgekit.runtime.bundle import publish, write_manifest
from edgekit.runtime.manifest import Manifest
from edgekit.runtime.model import BundleModel
from edgekit.targets import Target

# Times a finished bundle elsewhere (on the boards, `edgekit compile --device`): p50 ms by where it ran.
BundleTimer = Callable[[Path], Mapping[str, float]]


def compile_model(config: CompileConfig, progress: Progress = QUIET, timer: BundleTimer | None = None) -> Manifest:
    """`edgekit compile`: one precision, or "auto"; returns the bundle's manifest."""
    if config.precision == "auto":
        return compile_auto(config, progress, timer)
    if timer is not None:
        raise EdgekitError(
            "--device times each candidate of --precision auto; to time one bundle on a board, compile it and run "
            "`edgekit bench BUNDLE --device NAME`"
        )
    return compile_bundle(config, progress)


def compile_auto(config: CompileConfig, progress: Progress = QUIET, timer: BundleTimer | None = None) -> Manifest:
    """Every precision the target runs, built and timed (on this host where it is the target's device, on
    the boards with a `timer`: the slowest board's p50 decides, since one bundle ships to all)."""
    config = resolve(config)
    target, out = config.target, config.out
    assert isinstance(target, Target) and out is not None  # resolved
    if not has_class_folders(config.val):
        raise EdgekitError("--precision auto needs --val DIR with one sub-directory of images per class")
    validate(dataclasses.replace(config, precision="fp32"))
    budget = Budget(DEFAULT_MAX_DROP_PTS if config.max_accuracy_drop is None else config.max_accuracy_drop)
    if config.max_accuracy_drop is None:
        progress.note(f"--precision auto: no --max-accuracy-drop given, using {budget.max_drop_pts:g} top-1 points")
    candidates: list[dict[str, Any]] = []
    untimed: dict[str, str] = {}
    manifests: dict[str, Manifest] = {}
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.auto-", dir=out.parent) as work:
        for precision in target.precisions:
            trial_out = Path(work) / precision
            trial = dataclasses.replace(
                config,
                precision=precision,
                out=trial_out,
                force=False,
                max_accuracy_drop=None if precision == "fp32" else budget.max_drop_pts,
            )
            progress.note(f"--precision auto: building {precision}")
            try:
                manifest = compile_bundle(trial, progress)
            except EdgekitError as exc:
                candidates.append({"precision": precision, "rejected": str(exc)})
                continue
            manifests[precision] = manifest
            problem = None if timer is not None else host_problem(target, get_backend(manifest.backend))
            p50, by_device = None, None
            if timer is not None:
                by_device = dict(timer(trial_out))
                p50 = max(by_device.values())
            elif problem is not None:
                untimed[precision] = problem
            accuracy = manifest.section("accuracy")
            paired = accuracy["models"]["bundle"]["vs_reference"]
            if precision == "fp32":  # FP32 is the reference itself: it always fits (any difference is rounding)
                paired = PairedDifference(accuracy["images"], 0, 0).to_dict()
            verdict = budget.judge_counts(paired)
            drop = float(paired["drop_pts"])
            candidates.append(
                {
                    "precision": precision,
                    "backend": manifest.backend,
                    "p50_ms": p50,
                    **({"p50_ms_by_device": by_device} if by_device is not None else {}),
                    "drop_pts": drop,
                    "vs_reference": paired,
                    "verdict": verdict.verdict,
                    "within_budget": verdict.ships,
                    "builds": manifest.section("selection").get("rungs", []),  # every backend/rung it tried
                }
            )
            speed = f"not timed here ({problem})" if problem else "timed below" if p50 is None else f"p50 {p50:.2f} ms"
            if by_device is not None:
                speed += " (" + ", ".join(f"{name} {ms:.2f}" for name, ms in by_device.items()) + ")"
            unsettled = verdict.words("labelled images")
            progress.note(f"  {precision}: {speed}, top-1 drop {drop:.2f} pts{f' ({unsettled})' if unsettled else ''}")
        built = [c for c in candidates if "rejected" not in c]
        if not built:
            reasons = "; ".join(f"{c['precision']}: {c['rejected']}" for c in candidates)
            raise EdgekitError(f"--precision auto: no precision could be compiled: {reasons}")
        if timer is None:
            _time_here_together([c for c in built if c["precision"] not in untimed], manifests, Path(work), config)
            progress.note(f"--precision auto, timed together, in turns: {_speeds(built)}")
        else:  # a board lost midway: every candidate is compared on the boards that timed all
            for candidate in built:
                candidate["p50_ms"] = max(candidate["p50_ms_by_device"][name] for name in _timed_on_all(built))
        choice = fastest_that_ships(
            built, lambda c: c["p50_ms"], lambda c: PairedDifference.of_record(c["vs_reference"]), budget, "precision"
        )
        chosen = choice.chosen
        progress.note(f"--precision auto chose {chosen['precision']} ({choice.reason})")
        source = Path(work) / chosen["precision"]
        record: dict[str, Any] = {
            "max_accuracy_drop_pts": budget.max_drop_pts,
            "chosen": chosen["precision"],
            "reason": choice.reason,
            "candidates": candidates,
        }
        if timer is not None:
            record["measured_on"] = "devices (slowest decides): " + ", ".join(_timed_on_all(built))
        if untimed:
            record["ranked_by"] = f"target file order ({'; '.join(sorted(set(untimed.values())))})"
        final = write_manifest(source, manifests[chosen["precision"]].replace(precision_auto=record))
        publish(source, out, config.force)  # the chosen bundle is renamed into place, not copied
        return final


def _time_here_together(
    candidates: list[dict[str, Any]], manifests: dict[str, Manifest], work: Path, config: CompileConfig
) -> None:
    """Sets each candidate's `p50_ms`, timed on this host once all were built, together, in turns (the one
    timing loop): compiles minutes apart would carry the machine's drift into the comparison."""
    if not candidates:
        return
    models = [BundleModel(work / c["precision"], manifests[c["precision"]], None, config.threads) for c in candidates]
    batches = [blank_input(m.preprocessing.crop, m.preprocessing) for m in models]
    for candidate, timing in zip(candidates, time_runs([m.runner.run for m in models], batches)):
        candidate["p50_ms"] = timing.p50_ms


def _speeds(candidates: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c['precision']} p50 {c['p50_ms']:.2f} ms" for c in candidates if c["p50_ms"] is not None)


def _timed_on_all(built: list[dict[str, Any]]) -> list[str]:
    """The boards that timed every candidate (the timer leaves a failing board out from then on)."""
    common = set.intersection(*(set(c["p50_ms_by_device"]) for c in built))
    if not common:
        raise EdgekitError("--precision auto: no board timed every precision; see the warnings above")
    return sorted(common)
