"""Uncertainty of accuracy figures: an accuracy on n images is a proportion, reported with its interval.

Wilson's score interval (not the normal approximation, which collapses to a point at 0 % or 100 % and
misbehaves on small n) at 95 % confidence. Two models compared on the same images are compared paired
(`PairedDifference`). What a figure and its interval decide is `measure/decide.py`'s: the one rule.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054  # two-sided 95 %


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion successes / n; (0, 1) for n = 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def indistinguishable_from_chance(successes: int, n: int, classes: int) -> bool:
    """Whether a top-1 of successes / n cannot be told apart from guessing among `classes` (the interval's
    lower end is at or below 1 / classes)."""
    return classes > 1 and wilson(successes, n)[0] <= 1.0 / classes


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """Two models' top-1 on the same n images, as a paired comparison: only the images where exactly one of
    them is right (`lost`: the first right, the second wrong; `gained`: the reverse) carry information."""

    n: int
    lost: int
    gained: int

    @classmethod
    def of(cls, first_correct: Sequence[bool], second_correct: Sequence[bool]) -> PairedDifference:
        first, second = list(map(bool, first_correct)), list(map(bool, second_correct))
        if len(first) != len(second):
            raise ValueError("paired predictions must be on the same images")
        lost = sum(a and not b for a, b in zip(first, second))
        gained = sum(b and not a for a, b in zip(first, second))
        return cls(len(first), lost, gained)

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> PairedDifference:
        """The difference `to_dict` recorded (bench results, manifests)."""
        return cls(int(record["images"]), int(record["lost"]), int(record["gained"]))

    @property
    def drop_pts(self) -> float:
        """Top-1 points the second loses against the first."""
        return 100.0 * (self.lost - self.gained) / self.n if self.n else 0.0

    def interval_pts(self, z: float = Z95) -> tuple[float, float]:
        """95 % interval of the drop: Wilson's interval of lost / (lost + gained), conditional on the number of
        discordant images (the exact-McNemar view), scaled back to points of top-1."""
        discordant = self.lost + self.gained
        if not self.n or not discordant:
            return (0.0, 0.0)
        low, high = wilson(self.lost, discordant, z)
        scale = 100.0 * discordant / self.n
        return ((2 * low - 1) * scale, (2 * high - 1) * scale)

    def to_dict(self) -> dict[str, float | int]:
        low, high = self.interval_pts()
        return {"drop_pts": self.drop_pts, "ci95_pts": [low, high], "images": self.n, "lost": self.lost,
                "gained": self.gained}  # fmt: skip


def mean_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    """(mean, 95 % interval) of per-image values: the normal interval of the mean (n is in the hundreds)."""
    n = len(values)
    if not n:
        return (0.0, 0.0, 0.0)
    mean = math.fsum(values) / n
    if n < 2:
        return (mean, mean, mean)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return (mean, mean - z * sd / math.sqrt(n), mean + z * sd / math.sqrt(n))


@dataclasses.dataclass(frozen=True)
class TopOneAgreement:
    """How often two models' top-1 classes agree on the same n images, with Wilson's interval: the one
    agreement computation (`top1_agreement`), whatever the two are (a build and FP32, two decode paths)."""

    n: int
    agreed: int
    matches: tuple[bool, ...]  # per image, for paired comparisons

    @property
    def rate(self) -> float:
        return self.agreed / self.n if self.n else 0.0

    def interval(self) -> tuple[float, float]:
        return wilson(self.agreed, self.n)

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.n, "top1_agreement": self.rate, "top1_agreement_ci95": list(self.interval())}


def top1_agreement(first: Any, second: Any) -> TopOneAgreement:
    """Top-1 agreement of two models on the same images. Each argument is either their top-1 classes (one
    number per image) or their outputs (one row of scores per image, ranked by `argmax`)."""
    import numpy as np

    def classes(values: Any) -> Any:
        array = np.asarray(values)
        return array.reshape(len(array), -1).argmax(1) if array.ndim > 1 else array.astype(np.int64)

    a, b = classes(first), classes(second)
    if a.shape != b.shape:
        raise ValueError("top-1 agreement needs the two models' results on the same images")
    matches = tuple(bool(x) for x in (a == b).tolist())
    return TopOneAgreement(len(matches), sum(matches), matches)


@dataclasses.dataclass(frozen=True)
class Agreement:
    """A build's outputs against FP32's on the same n images, without labels: top-1 agreement (Wilson), top-5
    overlap and relative logit error (per image |candidate - fp32| / |fp32|, L2), each with its interval."""

    n: int
    agreed: int
    top5_overlap: tuple[float, float, float]  # mean, 95 % interval
    logit_error: tuple[float, float, float]
    max_abs_diff: float

    @classmethod
    def of(cls, reference: Any, candidate: Any) -> Agreement:
        import numpy as np

        reference = np.asarray(reference, np.float64).reshape(len(reference), -1)
        candidate = np.asarray(candidate, np.float64).reshape(len(candidate), -1)
        k = min(5, reference.shape[1])
        top_ref = np.argsort(-reference, axis=1)[:, :k]
        top_cand = np.argsort(-candidate, axis=1)[:, :k]
        overlap = [len(set(a) & set(b)) / k for a, b in zip(top_ref.tolist(), top_cand.tolist())]
        error = np.linalg.norm(candidate - reference, axis=1) / np.maximum(np.linalg.norm(reference, axis=1), 1e-12)
        return cls(
            n=len(reference),
            agreed=top1_agreement(reference, candidate).agreed,
            top5_overlap=mean_interval(overlap),
            logit_error=mean_interval(error.tolist()),
            max_abs_diff=float(np.max(np.abs(candidate - reference))) if len(reference) else 0.0,
        )

    @property
    def rate(self) -> float:
        return self.agreed / self.n if self.n else 0.0

    def interval(self) -> tuple[float, float]:
        return wilson(self.agreed, self.n)

    def describe(self) -> str:
        low, high = self.interval()
        return (
            f"agreement {self.rate:.2%} (95 % interval {low:.2%}–{high:.2%}, {self.n} images), "
            f"top-5 overlap {self.top5_overlap[0]:.1%}, logit error {self.logit_error[0]:.3f}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.n,
            "top1_agreement": self.rate,
            "top1_agreement_ci95": list(self.interval()),
            "top5_overlap": self.top5_overlap[0],
            "top5_overlap_ci95": list(self.top5_overlap[1:]),
            "relative_logit_error": self.logit_error[0],
            "relative_logit_error_ci95": list(self.logit_error[1:]),
            "max_abs_diff": self.max_abs_diff,
        }
