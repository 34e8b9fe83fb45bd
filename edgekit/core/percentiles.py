"""Percentiles a sample can support: a tail percentile q is reported only when at least `TAIL_SAMPLES`
samples lie at or beyond it (n·(1 − q/100) ≥ 5: p90 from 50 samples, p99 from 500). Below that, the
"p99" of a small sample is just its largest value or two, which one hiccup moves anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TAIL_SAMPLES = 5


def supported(n: int, q: float) -> bool:
    """Whether n samples support the q-th percentile (q in 0..100)."""
    return n > 0 and (q <= 50 or n * (100 - q) / 100 >= TAIL_SAMPLES - 1e-9)


def percentile_or_none(samples: Sequence[float], q: float) -> float | None:
    """The q-th percentile of `samples`, or None when there are too few of them to support it."""
    return float(np.percentile(samples, q)) if supported(len(samples), q) else None
