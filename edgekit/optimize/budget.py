"""The accuracy budget: keep the layers that cost the most in higher precision until the drop fits.

Every decision is a paired comparison on the same labelled images (`measure/stats.PairedDifference`):
plain INT8 is rebuilt only when its drop against FP32 exceeds the budget beyond the noise (the 95 %
interval's lower end is above the budget); layer groups whose FP32 fixes significantly more images than it
breaks are kept first, then the others by their gain in top-1 or in agreement with FP32; the search stops
at the first build whose drop no longer exceeds the budget. Latency is never paid for a difference inside
the noise; with too few images the record says how many would decide it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.measure.stats import PairedDifference


@dataclasses.dataclass(frozen=True)
class Trial:
    keep_fp32: tuple[str, ...]
    correct: tuple[bool, ...]  # per labelled image: the build's top-1 is the label
    agreement: float  # top-1 agreement with FP32

    @property
    def top1(self) -> float:
        return float(np.mean(self.correct)) if self.correct else 0.0

    def against(self, reference_correct: Sequence[bool]) -> PairedDifference:
        return PairedDifference.of(reference_correct, self.correct)

    def to_dict(self, reference_correct: Sequence[bool]) -> dict[str, Any]:
        return {"keep_fp32": list(self.keep_fp32), "top1": self.top1, "agreement": self.agreement,
                "vs_fp32": self.against(reference_correct).to_dict()}  # fmt: skip


def _describe(difference: PairedDifference) -> str:
    low, high = difference.interval_pts()
    return f"{difference.drop_pts:.2f} pts (95 % interval {low:.2f} to {high:.2f}, {difference.n} images)"


def fit_budget(
    measure: Callable[[tuple[str, ...]], Trial],
    groups: Sequence[str],
    reference_correct: Sequence[bool],
    max_drop_pts: float,
    progress: Progress = QUIET,
) -> tuple[Trial, dict[str, Any]]:
    """(the first trial whose drop does not exceed the budget beyond the noise, a record of the search);
    EdgekitError, saying what each step achieved, if none does."""
    reference = tuple(map(bool, reference_correct))
    plain = measure(())
    drop = plain.against(reference)
    record: dict[str, Any] = {
        "max_drop_pts": max_drop_pts,
        "reference_top1": float(np.mean(reference)),
        "rule": "act only when the paired drop's 95 % interval lies above the budget (Wilson on discordant images)",
        "plain": plain.to_dict(reference),
    }
    if not drop.exceeds(max_drop_pts):
        if drop.drop_pts > max_drop_pts:
            needed = drop.images_needed(max_drop_pts)
            more = f"; about {needed} images would tell" if needed else ""
            record["inside_noise"] = f"drop {_describe(drop)} is not above the budget beyond the noise{more}"
            progress.note(f"INT8 drops {_describe(drop)}: not above the {max_drop_pts:g}-point budget beyond the "
                          f"noise, so no latency is spent on it{more}")  # fmt: skip
        return plain, {**record, "sensitivity": None, "steps": []}
    progress.note(f"INT8 drops {_describe(drop)} (budget {max_drop_pts:g}): measuring per-layer sensitivity")
    gains: dict[str, PairedDifference] = {}
    agreement: dict[str, float] = {}
    for group in progress.bar(groups, desc="sensitivity", total=len(groups), unit="group"):
        trial = measure((group,))
        gains[group] = trial.against(plain.correct)  # a negative drop: the group's FP32 fixes images
        agreement[group] = trial.agreement - plain.agreement
    # Groups whose top-1 gain is significant on their own come first (paired interval below zero), then the
    # others by their gain in top-1, then in agreement with FP32. Leave-one-out cannot see errors that
    # compound (a badly calibrated early layer spoils every later one, so no single group recovers much),
    # so every group stays on the ladder; each cumulative step is measured again and the first that no
    # longer exceeds the budget beyond the noise wins.
    significant = {g for g in groups if gains[g].interval_pts()[1] < 0}
    order = sorted(groups, key=lambda g: (g not in significant, gains[g].drop_pts, -agreement[g]))
    helpful = [g for g in groups if gains[g].drop_pts < 0 or agreement[g] > 0]
    record["sensitivity"] = {
        g: {"top1_gain_pts": -gains[g].drop_pts, "agreement_gain": agreement[g], "significant": g in significant}
        for g in groups
    }
    steps: list[dict[str, Any]] = []
    kept: list[str] = []
    for group in order:
        kept.append(group)
        trial = measure(tuple(kept))
        steps.append(trial.to_dict(reference))
        progress.note(f"keeping {', '.join(kept)} in FP32: drop {_describe(trial.against(reference))}")
        if not trial.against(reference).exceeds(max_drop_pts):
            return trial, {**record, "steps": steps}
    best = min([drop.drop_pts] + [s["vs_fp32"]["drop_pts"] for s in steps])
    why = (
        f"no layer group kept in FP32 recovers any image on its own ({drop.n} images)"
        if not helpful
        else f"with all {len(order)} layer groups kept in FP32 the best drop was {best:.2f} pts"
    )
    raise EdgekitError(
        f"cannot meet --max-accuracy-drop {max_drop_pts:g}: plain INT8 drops {_describe(drop)}, above the budget "
        f"beyond the noise, and {why}; raise the budget or use --precision fp32"
    )
