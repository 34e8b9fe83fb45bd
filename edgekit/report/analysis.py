"""What a report concludes: the FP32 reference, the Pareto front, and the headline variant."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from edgekit.measure.decide import Budget, fastest_that_ships, top1_drop_pts
from edgekit.report.variants import Variant


@dataclasses.dataclass(frozen=True)
class Reference:
    """The FP32 model every variant is compared with (timed in the same run as the variants)."""

    p50_ms: float | None
    top1: float | None
    kind: str | None


def reference_of(variants: Sequence[Variant]) -> Reference:
    p50 = next((v.reference_p50_ms for v in variants if v.reference_p50_ms is not None), None)
    top1 = next((v.reference_top1 for v in variants if v.reference_top1 is not None), None)
    kind = next((v.result.reference_kind for v in variants if v.result.reference_kind), None)
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


@dataclasses.dataclass(frozen=True)
class Row:
    """One variant with the numbers every table and plot shares."""

    name: str
    precision: str
    backend: str
    iterations: int | None
    p50_ms: float
    p90_ms: float | None
    p99_ms: float | None
    images_per_s_b8: float | None
    speedup: float | None
    top1: float | None
    top1_ci95: tuple[float, float] | None
    agreement: float | None
    agreement_ci95: tuple[float, float] | None
    drop_pts: float | None
    model_mb: float
    measured_on: str


def summary_rows(variants: Sequence[Variant], reference: Reference) -> list[Row]:
    rows = []
    for variant in variants:
        b1, b8, accuracy = variant.latency(), variant.latency(batch=8), variant.accuracy
        rows.append(
            Row(
                name=variant.name,
                precision=variant.bundle.precision,
                backend=variant.bundle.backend,
                iterations=b1.iterations if b1 else None,
                p50_ms=variant.p50_ms,
                p90_ms=b1.p90_ms if b1 else None,
                p99_ms=b1.p99_ms if b1 else None,
                images_per_s_b8=b8.images_per_s if b8 else None,
                speedup=speedup_of(variant, reference),
                top1=variant.top1,
                top1_ci95=accuracy.top1_ci95 if accuracy else None,
                agreement=accuracy.agreement if accuracy else None,
                agreement_ci95=accuracy.agreement_ci95 if accuracy else None,
                drop_pts=drop_pts(variant, reference),
                model_mb=variant.bundle.model_bytes / 1e6,
                measured_on=variant.result.measured_on,
            )
        )
    return rows
