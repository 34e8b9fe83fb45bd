"""The one accuracy rule: how a measured loss, its interval and a limit give a verdict, and how a faster
candidate is preferred over a slower one. Every decision that trades accuracy for speed calls it: compile's
accuracy guard and its ladder, pruning and its ratio search, precision auto, sweep and report.

Two limits, one rule:
- `Budget` (`--max-accuracy-drop`): the top-1 points a build may lose against the FP32 original on
  labelled images, compared paired (`PairedDifference`: only the images where exactly one is right count).
- `AgreementFloor` (`--min-agreement`): the share of images, labels not needed, on which the build's top-1
  equals FP32's (Wilson's interval).

Verdicts, from the point estimate and its 95 % interval:
- "pass": within the limit, and the whole interval is too: confirmed;
- "unconfirmed": within the limit, but the interval reaches past it — these images cannot confirm it;
  the build ships, and the output and the manifest say "unconfirmed" and how many images would confirm;
- "inside_noise": past the limit, but the interval reaches back within it: not shown to be past it,
  yet not within it either — it does not ship (a search that took such builds would drift past the limit
  on its luck); how many images would decide is said;
- "fail": past the limit beyond the noise.
A build *ships* on "pass" or "unconfirmed". Among candidates that ship, the fastest is chosen, where
"faster" needs a clear margin (`SPEED_MARGIN`, `fastest_first`): two builds of one graph differ by more than
a few percent from run to run, so a candidate listed later (a target file lists its backends and precisions
fastest first) overtakes an earlier one only when its p50 is 15 % lower, and the same model compiles to the
same choice on every run. Latencies are the one timing loop's (`measure/latency.py`), taken together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from edgekit.measure.stats import Agreement, PairedDifference, TopOneAgreement, wilson

T = TypeVar("T")

VERDICTS = ("fail", "inside_noise", "unconfirmed", "pass")  # worst first
SHIPS = ("unconfirmed", "pass")
DEFAULT_MAX_DROP_PTS = 1.0  # --max-accuracy-drop where a decision needs one and none was given
MAX_IMAGES = 1_000_000  # images_needed gives up beyond this: no realistic set would decide
SPEED_MARGIN = 0.15  # a candidate overtakes one listed before it only when its p50 is this much lower


def fastest_first(p50s: Sequence[float | None], margin: float = SPEED_MARGIN) -> list[int]:
    """Indexes of `p50s` (in the target file's order) fastest first, where a later entry goes before an
    earlier one only when it is faster by more than `margin`; untimed entries last, in file order.

    Each pick is the earliest entry that no remaining entry beats by the margin, so near ties (within
    the run-to-run noise of a latency measurement) resolve the same way on every run."""
    remaining = [i for i, p in enumerate(p50s) if p is not None]
    order: list[int] = []
    while remaining:
        fastest = min(p50s[i] for i in remaining)  # type: ignore[type-var]
        order.append(next(i for i in remaining if fastest >= (1 - margin) * p50s[i]))  # type: ignore[operator]
        remaining.remove(order[-1])
    return order + [i for i, p in enumerate(p50s) if p is None]


def top1_drop_pts(reference_top1: float, top1: float) -> float:
    """Top-1 points lost against the reference (negative: the candidate scored higher)."""
    return (reference_top1 - top1) * 100.0


@dataclasses.dataclass(frozen=True)
class Verdict:
    verdict: str  # one of VERDICTS
    images_needed: int | None = None  # about how many images (same rates) would decide; None: none would, or decided

    @property
    def ships(self) -> bool:
        return self.verdict in SHIPS

    def words(self, noun: str) -> str:
        """ "unconfirmed: about 380 held-out images would confirm it", or "" where the verdict is settled."""
        if self.verdict == "unconfirmed":
            more = f": about {self.images_needed} {noun} would confirm it" if self.images_needed else ""
            return f"unconfirmed{more}"
        if self.verdict == "inside_noise":
            more = f": about {self.images_needed} {noun} would decide" if self.images_needed else ""
            return f"inside the noise{more}"
        return ""


def _verdict(within: bool, interval_within: bool, interval_beyond: bool) -> str:
    if within:
        return "pass" if interval_within else "unconfirmed"
    return "fail" if interval_beyond else "inside_noise"


def _images_to_decide(decided: Callable[[int], bool], n: int) -> int | None:
    """The smallest image count (same rates) at which `decided(count)` holds: doubling, then halving."""
    high = max(n, 1)
    while not decided(high):
        high *= 2
        if high > MAX_IMAGES:
            return None
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if decided(middle) else (middle, high)
    return high


@dataclasses.dataclass(frozen=True)
class Budget:
    """`--max-accuracy-drop`: top-1 points a build may lose against FP32 on labelled images."""

    max_drop_pts: float

    def judge(self, difference: PairedDifference) -> Verdict:
        low, high = difference.interval_pts()
        verdict = _verdict(difference.drop_pts <= self.max_drop_pts, high <= self.max_drop_pts, low > self.max_drop_pts)
        if verdict in ("pass", "fail") or not difference.n:
            return Verdict(verdict)

        def decided(count: int) -> bool:
            scale = count / difference.n
            scaled = PairedDifference(count, round(difference.lost * scale), round(difference.gained * scale))
            low, high = scaled.interval_pts()
            return high <= self.max_drop_pts if verdict == "unconfirmed" else low > self.max_drop_pts

        return Verdict(verdict, _images_to_decide(decided, difference.n))

    def judge_counts(self, record: dict[str, Any]) -> Verdict:
        """`judge` on a paired difference recorded by `PairedDifference.to_dict` (bench results, manifests)."""
        return self.judge(PairedDifference.of_record(record))


@dataclasses.dataclass(frozen=True)
class AgreementFloor:
    """`--min-agreement`: the share of images whose top-1 equals FP32's, a fraction."""

    minimum: float

    def judge(self, agreement: Agreement | TopOneAgreement) -> Verdict:
        low, high = agreement.interval()
        verdict = _verdict(agreement.rate >= self.minimum, low >= self.minimum, high < self.minimum)
        if verdict in ("pass", "fail") or not agreement.n:
            return Verdict(verdict)
        rate = agreement.rate

        def decided(count: int) -> bool:
            low, high = wilson(round(rate * count), count)
            return low >= self.minimum if verdict == "unconfirmed" else high < self.minimum

        return Verdict(verdict, _images_to_decide(decided, agreement.n))


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    """The verdict of several rules together: the worst of them."""
    return min(verdicts, key=lambda v: VERDICTS.index(v.verdict), default=Verdict("pass"))


@dataclasses.dataclass(frozen=True)
class Choice(Generic[T]):
    chosen: T
    within_budget: bool
    reason: str  # how it was chosen, in words


def fastest_that_ships(
    candidates: Sequence[T],
    latency_ms: Callable[[T], float | None],
    difference: Callable[[T], PairedDifference | None],
    budget: Budget,
    noun: str = "candidate",
) -> Choice[T]:
    """The fastest candidate that ships under `budget` (its paired `difference` against FP32); if none does,
    the one that loses least.

    A candidate whose latency is unknown (its device is not here) ranks after the timed ones, in the order
    given (a target file lists precisions fastest first). Without any accuracy figure the fastest is
    returned, not within budget, and the reason says so."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    order = {id(c): i for i, c in enumerate(candidates)}

    def speed(candidate: T) -> tuple[int, float, int]:
        latency = latency_ms(candidate)
        return (latency is None, latency or 0.0, order[id(candidate)])

    measured = [(c, d) for c, d in ((c, difference(c)) for c in candidates) if d is not None]
    eligible = [c for c, d in measured if budget.judge(d).ships]
    limit = f"the {budget.max_drop_pts:g}-point budget"
    if eligible:
        fastest = eligible[fastest_first([latency_ms(c) for c in eligible])[0]]
        return Choice(fastest, True, f"fastest of {len(eligible)} {noun}(s) within {limit}")
    if measured:
        least = min(measured, key=lambda cd: (cd[1].drop_pts, speed(cd[0])))[0]
        return Choice(least, False, f"no {noun} is within {limit}; this one loses least")
    return Choice(min(candidates, key=speed), False, f"fastest {noun}; accuracy was not measured")
