"""Uncertainty of accuracy figures: an accuracy on n images is a proportion, reported with its interval.

Wilson's score interval (not the normal approximation, which collapses to a point at 0 % or 100 % and
misbehaves on small n) at 95 % confidence. Two models compared on the same images are compared paired
(`PairedDifference`): a decision acts only when the difference is outside the noise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

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

    def exceeds(self, budget_pts: float) -> bool:
        """Whether the drop is above the budget beyond the noise (the interval's lower end is above it)."""
        return self.interval_pts()[0] > budget_pts

    def images_needed(self, budget_pts: float) -> int | None:
        """About how many images would tell this drop from the budget (same discordance rate), or None when
        the drop equals the budget (no number of images would)."""
        if not self.n:
            return None
        gap = abs(self.drop_pts - budget_pts) / 100.0
        rate = (self.lost + self.gained) / self.n
        spread = rate - (self.drop_pts / 100.0) ** 2
        if gap <= 0 or spread <= 0:
            return None
        return math.ceil(Z95 * Z95 * spread / (gap * gap))

    def to_dict(self) -> dict[str, float | int]:
        low, high = self.interval_pts()
        return {"drop_pts": self.drop_pts, "ci95_pts": [low, high], "images": self.n, "lost": self.lost,
                "gained": self.gained}  # fmt: skip
