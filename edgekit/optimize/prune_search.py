"""The budget decides the ratio: the largest pruning ratio (the fewest MACs) whose recovered model stays
within `--max-accuracy-drop` top-1 points of the *original* model on held-out labelled images.

Candidates are multiples of `search_step` up to `max_ratio`. Accuracy falls as the ratio grows, so the
search bisects: about log2(candidates) prune-and-recover runs instead of one per candidate. Each verdict is
the one accuracy rule (`measure.decide.Budget`) on a paired comparison with the original on the same
images: a ratio whose drop is above the budget is refused even inside the noise, one within it but not
confirmed is taken and said to be unconfirmed, and the record says how many images would tell.

Every trained candidate (weights and measurements) is kept in a state directory beside the output, written
file by file with a rename, so an interrupted search started again with the same model, images and pruning
settings reuses what it already trained. The budget is not part of that identity: a rerun with another
budget reuses the candidates too. The directory is removed once the pruned checkpoint is written.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekit.core.errors import EdgekitError
from edgekit.core.files import write_text_atomic
from edgekit.core.progress import QUIET, Progress
from edgekit.data.preprocess import PreprocessSpec
from edgekit.measure.decide import Budget
from edgekit.measure.stats import PairedDifference
from edgekit.model.architecture import apply_channel_plan, channel_plan
from edgekit.model.checkpoint import save_checkpoint
from edgekit.optimize.prune import LatencyProbe, PruneData, PruneOutcome, correct_per_image, prune_module
from edgekit.optimize.prune_config import PruneSettings

STATE_FORMAT = 1


def candidate_ratios(settings: PruneSettings) -> list[float]:
    count = math.floor(settings.max_ratio / settings.search_step + 1e-9)
    return [round(k * settings.search_step, 4) for k in range(1, count + 1)]


def search_identity(model_sha256: str, settings: PruneSettings, data: PruneData, spec: PreprocessSpec) -> str:
    """What a trained candidate depends on: the model, every pruning setting but the budget, the images
    (paths and sizes) and the preprocessing. A change in any of them starts the search afresh."""

    def images(dataset: Any) -> list[Any]:
        if dataset is None:
            return []
        return [[str(path), os.stat(path).st_size, label] for path, label in dataset.samples]

    trained_with = dataclasses.replace(settings, search_drop_pts=None)
    described = {
        "format": STATE_FORMAT,
        "model": model_sha256,
        "settings": trained_with.to_dict(),
        "spec": spec.to_dict(),
        "train": images(data.train),
        "unlabelled": images(data.unlabelled),
        "select": images(data.select),
        "val": images(data.val),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


class SearchState:
    """The candidates a search has trained, in `directory` (edgekit's own: replaced when its identity
    differs). A candidate counts only once its report, written last, is there."""

    def __init__(self, directory: Path, identity: str, progress: Progress) -> None:
        self.directory = directory
        marker = directory / "identity"
        if directory.is_dir() and (not marker.is_file() or marker.read_text().strip() != identity):
            progress.note(f"{directory} holds another search (other model, images or settings): starting afresh")
            shutil.rmtree(directory)
        directory.mkdir(exist_ok=True)
        write_text_atomic(marker, identity)

    def _paths(self, ratio: float) -> tuple[Path, Path]:
        stem = f"ratio-{ratio:.4f}"
        return self.directory / f"{stem}.pt", self.directory / f"{stem}.json"

    def load(self, original: nn.Module, ratio: float) -> PruneOutcome | None:
        weights, report_file = self._paths(ratio)
        if not (weights.is_file() and report_file.is_file()):
            return None
        saved = json.loads(report_file.read_text())
        checkpoint = torch.load(weights, weights_only=True)  # written by this search; tensors and plain data
        module = apply_channel_plan(copy.deepcopy(original), checkpoint["channel_plan"], type(original).__name__)
        module.load_state_dict(checkpoint["state_dict"])
        return PruneOutcome(
            module.eval(),
            saved["report"],
            np.asarray(saved["final_correct"], dtype=bool),
            np.asarray(saved["original_correct"], dtype=bool),
        )

    def save(self, ratio: float, outcome: PruneOutcome) -> None:
        weights, report_file = self._paths(ratio)
        save_checkpoint(
            {"state_dict": outcome.module.state_dict(), "channel_plan": channel_plan(outcome.module)}, weights
        )
        saved = {
            "report": outcome.report,
            "final_correct": [] if outcome.final_correct is None else outcome.final_correct.tolist(),
            "original_correct": [] if outcome.original_correct is None else outcome.original_correct.tolist(),
        }
        write_text_atomic(report_file, json.dumps(saved))

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def search_ratio(
    module: nn.Module,
    settings: PruneSettings,
    spec: PreprocessSpec,
    data: PruneData,
    latency: LatencyProbe,
    state: SearchState,
    progress: Progress = QUIET,
) -> tuple[PruneOutcome, dict[str, Any]]:
    """(the pruned model at the largest ratio within the budget, the search's record); EdgekitError when
    even the smallest candidate is over the budget."""
    assert settings.search_drop_pts is not None and data.val is not None
    budget = settings.search_drop_pts
    ratios = candidate_ratios(settings)
    progress.note("measuring the original model on the held-out images")
    original_correct = correct_per_image(module, data.val, spec)
    tried: dict[float, tuple[PruneOutcome, PairedDifference, str]] = {}
    before: dict[str, Any] | None = None  # the original's MACs, size and latency, measured by the first candidate
    low, high = -1, len(ratios)  # ratios[low] passes (-1: the original), ratios[high] does not
    while high - low > 1:
        ratio = ratios[(low + high) // 2]
        outcome = state.load(module, ratio)
        if outcome is not None:
            progress.note(f"ratio {ratio:.0%}: trained by an earlier run of this search, reused")
        else:
            progress.note(f"ratio {ratio:.0%}: pruning and recovering (search step {len(tried) + 1})")
            candidate = dataclasses.replace(settings, ratio=ratio, search_drop_pts=None)
            outcome = prune_module(
                copy.deepcopy(module), candidate, spec, data, latency, progress, original_correct, before
            )
            state.save(ratio, outcome)
        before = outcome.report["before"]
        assert outcome.final_correct is not None
        difference = PairedDifference.of(original_correct, outcome.final_correct)
        verdict = Budget(budget).judge(difference)
        tried[ratio] = (outcome, difference, verdict)
        low_pts, high_pts = difference.interval_pts()
        progress.note(
            f"ratio {ratio:.0%}: {outcome.report['macs_removed']:.0%} fewer MACs, top-1 drop "
            f"{difference.drop_pts:.2f} pts (95 % interval {low_pts:.2f} to {high_pts:.2f}) on {difference.n} images "
            f"→ {verdict.verdict}"
        )
        if verdict.ships:
            low = (low + high) // 2
        else:
            high = (low + high) // 2
    record = {
        "budget_pts": budget,
        "candidates": ratios,
        "rule": "measure.decide.Budget: paired top-1 against the original on the same held-out images; a ratio "
        "ships when its drop is within the budget (pass, or unconfirmed where the 95 % interval reaches past it)",
        "tried": [
            {"ratio": ratio, "macs_removed": o.report["macs_removed"], "top1": o.report["top1"],
             "drop_vs_original": d.to_dict(), "verdict": v.verdict,
             **({"images_needed": v.images_needed} if v.images_needed else {})}
            for ratio, (o, d, v) in sorted(tried.items())
        ],
        "chosen": ratios[low] if low >= 0 else None,
    }  # fmt: skip
    if low < 0:
        _, difference, verdict = tried[ratios[0]]
        words = verdict.words("labelled images")
        more = f" ({words})" if words else ""
        raise EdgekitError(
            f"no pruning ratio keeps top-1 within {budget:g} points of the original: the smallest tried, "
            f"{ratios[0]:.0%}, loses {difference.drop_pts:.2f} pts on {difference.n} images{more}; recover longer "
            f"(--recover-epochs, --distill), give more --recover-data, lower --search-step, or allow a larger "
            f"--max-accuracy-drop. The trained candidates stay in {state.directory} and a rerun reuses them. "
            "Nothing was written"
        )
    chosen, difference, verdict = tried[ratios[low]]
    record["verdict"] = verdict.verdict
    record["confirmed"] = verdict.verdict == "pass"
    if verdict.verdict == "unconfirmed":
        # Shipping is the point estimate's verdict; whether the true drop is within the budget, these images
        # cannot tell. Say so, and how many would (benchmarks/results/prune_methods.md: a 0.5-point drop on
        # 1,000 images was 1.5 points on 3,000 others).
        record["images_needed"] = verdict.images_needed
        progress.note(
            f"warning: the chosen ratio's drop, {difference.drop_pts:.2f} pts, is within the budget, but its 95 % "
            f"interval reaches {difference.interval_pts()[1]:.2f} pts on these {difference.n} images: "
            f"{verdict.words('held-out images')}"
        )
    return chosen, record
