"""Uncertainty of accuracy figures: an accuracy on n images is a proportion, reported with its interval.

Wilson's score interval (not the normal approximation, which collapses to a point at 0 % or 100 % and
misbehaves on small n) at 95 % confidence.
"""

from __future__ import annotations

import math

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
