"""The accuracy decisions, made one way everywhere: top-1 drop, and the fastest candidate within a budget.

Used by compile's accuracy budget, precision auto, pruning's accuracy check, sweep and report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


def top1_drop_pts(reference_top1: float, top1: float) -> float:
    """Top-1 points lost against the reference (negative: the candidate scored higher)."""
    return (reference_top1 - top1) * 100.0


@dataclasses.dataclass(frozen=True)
class Choice(Generic[T]):
    chosen: T
    within_budget: bool
    reason: str  # how it was chosen, in words


def fastest_within_budget(
    candidates: Sequence[T],
    latency_ms: Callable[[T], float | None],
    drop_pts: Callable[[T], float | None],
    budget_pts: float,
    noun: str = "candidate",
) -> Choice[T]:
    """The fastest candidate whose top-1 drop fits the budget; if none fits, the one that loses least.

    A candidate whose latency is unknown (its device is not here) ranks after the timed ones, in the
    order given (a target file lists precisions fastest first). Without any accuracy figure the fastest
    is returned, not within budget, and the reason says so.
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    order = {id(c): i for i, c in enumerate(candidates)}

    def speed(candidate: T) -> tuple[int, float, int]:
        latency = latency_ms(candidate)
        return (latency is None, latency or 0.0, order[id(candidate)])

    measured = [c for c in candidates if drop_pts(c) is not None]
    eligible = [c for c in measured if (drop_pts(c) or 0.0) <= budget_pts]
    if eligible:
        return Choice(
            min(eligible, key=speed),
            True,
            f"fastest of {len(eligible)} {noun}(s) within the {budget_pts:g}-point budget",
        )
    if measured:
        least = min(measured, key=lambda c: (drop_pts(c) or 0.0, speed(c)))
        return Choice(least, False, f"no {noun} is within the {budget_pts:g}-point budget; this one loses least")
    return Choice(min(candidates, key=speed), False, f"fastest {noun}; accuracy was not measured")
