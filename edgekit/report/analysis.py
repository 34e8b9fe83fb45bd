"""What a report concludes: the FP32 reference, the Pareto front, and the headline variant."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from edgekit.measure.decide import Budget, fastest_that_ships, top1_drop_pts
from edgekit.report.variants import Variant


@dataclasses.dataclass(frozen=True)
class Reference:
    """The FP32 model every variant is compared with (timed in the same run as the variants)."""

    p50_ms: float | None
    top1: float | None
    kind: str | None


def reference_of(variants: Sequence[Variant]) -> Reference:
    p50 = next((v.latency("reference")["p50_ms"] for v in variants if v.latency("reference")), None)
    top1 = next((v.reference_top1 for v in variants if v.reference_top1 is not None), None)
    kind = next((v.results["reference"]["kind"] for v in variants if v.results.get("reference")), None)
    return Reference(p50, top1, kind)


def drop_pts(variant: Variant, reference: Reference) -> float | None:
    """Top-1 points lost against the FP32 reference (negative: the variant scored higher)."""
    if variant.top1 is None or reference.top1 is None:
        return None
    return top1_drop_pts(reference.top1, variant.top1)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats on both (lower latency, higher accuracy)."""
    front = []
    for i, (latency, accuracy) in enumerate(points):
        dominated = any(
            other_latency <= latency
            and other_accuracy >= accuracy
            and (other_latency, other_accuracy) != (latency, accuracy)
            for j, (other_latency, other_accuracy) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


@dataclasses.dataclass(frozen=True)
class Headline:
    variant: Variant
    speedup: float | None  # reference p50 / variant p50, batch 1
    drop_pts: float | None
    within_budget: bool
    reason: str  # how it was chosen, in words


def headline(variants: Sequence[Variant], reference: Reference, budget: Budget) -> Headline:
    """The fastest variant that ships under the budget (the one accuracy rule, paired against FP32); without
    accuracy, the fastest, said so."""
    choice = fastest_that_ships(variants, lambda v: v.p50_ms, lambda v: v.vs_reference, budget, noun="variant")
    chosen, reason = choice.chosen, choice.reason
    if all(v.vs_reference is None for v in variants):
        reason = (
            "fastest variant; accuracy was not measured (bench with --val DIR to rank by the budget)"
            if all(v.top1 is None for v in variants)
            else "fastest variant; there is no FP32 reference to measure accuracy loss against (bench --reference)"
        )
    return Headline(chosen, speedup_of(chosen, reference), drop_pts(chosen, reference), choice.within_budget, reason)


def speedup_of(variant: Variant, reference: Reference) -> float | None:
    """The variant's speed-up over FP32: against the reference timed in its own run, in turns, where it was."""
    if variant.speedup is not None:
        return variant.speedup
    return reference.p50_ms / variant.p50_ms if reference.p50_ms else None


def summary_rows(variants: Sequence[Variant], reference: Reference) -> list[dict[str, Any]]:
    """One row per variant with the numbers every table and plot shares."""
    rows = []
    for variant in variants:
        b8 = variant.latency(batch=8)
        rows.append(
            {
                "name": variant.name,
                "precision": variant.bundle["precision"],
                "backend": variant.bundle["backend"],
                "p50_ms": variant.p50_ms,
                "iterations": (variant.latency() or {}).get("iterations"),
                "p90_ms": (variant.latency() or {}).get("p90_ms"),
                "p99_ms": (variant.latency() or {}).get("p99_ms"),
                "images_per_s_b8": b8["images_per_s"] if b8 else None,
                "speedup": speedup_of(variant, reference),
                "top1": variant.top1,
                "top1_ci95": variant.interval("top1_ci95"),
                "agreement": variant.agreement,
                "agreement_ci95": variant.interval("top1_agreement_ci95"),
                "drop_pts": drop_pts(variant, reference),
                "model_mb": variant.bundle["model_bytes"] / 1e6,
                "measured_on": variant.results["measured_on"],
            }
        )
    return rows
