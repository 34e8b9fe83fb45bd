"""The accuracy budget: keep the layers that cost the most in higher precision until the drop fits.

Sensitivity is measured, not guessed: each layer group is left out of quantization on its own
(leave-one-out) and the recovered top-1 is measured on the user's labelled images. Groups are then
kept in FP32 in that order, re-measuring after each, until the drop is within the budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.measure.decide import top1_drop_pts


@dataclasses.dataclass(frozen=True)
class Trial:
    keep_fp32: tuple[str, ...]
    top1: float
    agreement: float

    def drop_pts(self, reference_top1: float) -> float:
        return top1_drop_pts(reference_top1, self.top1)


def fit_budget(
    measure: Callable[[tuple[str, ...]], Trial],
    groups: Sequence[str],
    reference_top1: float,
    max_drop_pts: float,
    progress: Progress = QUIET,
) -> tuple[Trial, dict[str, Any]]:
    """(the first trial within budget, a record of the search); EdgekitError if none is."""
    plain = measure(())
    record: dict[str, Any] = {
        "max_drop_pts": max_drop_pts,
        "reference_top1": reference_top1,
        "plain": dataclasses.asdict(plain),
    }
    if plain.drop_pts(reference_top1) <= max_drop_pts:
        return plain, {**record, "sensitivity": None, "steps": []}
    drop = plain.drop_pts(reference_top1)
    progress.note(f"INT8 drops {drop:.2f} pts (budget {max_drop_pts:g}): measuring per-layer sensitivity")
    sensitivity = {}
    for group in progress.bar(groups, desc="sensitivity", total=len(groups), unit="group"):
        trial = measure((group,))
        sensitivity[group] = (trial.top1 - plain.top1, trial.agreement - plain.agreement)
    order = sorted(groups, key=lambda g: sensitivity[g], reverse=True)
    record["sensitivity"] = {g: {"top1_gain": sensitivity[g][0], "agreement_gain": sensitivity[g][1]} for g in order}
    steps, kept = [], []
    for group in order:
        kept.append(group)
        trial = measure(tuple(kept))
        steps.append(dataclasses.asdict(trial))
        progress.note(f"keeping {', '.join(kept)} in FP32: drop {trial.drop_pts(reference_top1):.2f} pts")
        if trial.drop_pts(reference_top1) <= max_drop_pts:
            return trial, {**record, "steps": steps}
    best = max(steps, key=lambda s: s["top1"])
    raise EdgekitError(
        f"cannot meet --max-accuracy-drop {max_drop_pts:g}: plain INT8 drops {plain.drop_pts(reference_top1):.2f} pts "
        f"and even with all {len(groups)} layer groups in FP32 the best drop was "
        f"{top1_drop_pts(reference_top1, best['top1']):.2f} pts; raise the budget or use --precision fp32"
    )
