"""The accuracy guard's ladder: which quantized build ships, decided by measurements on held-out images.

Every build is compared with FP32 on held-out images it was never calibrated on (label-free: top-1
agreement, per image, against `--min-agreement`) and, where `--max-accuracy-drop` and labelled `--val`
images are given, on the labels (paired, against the budget). Both are judged by the one accuracy rule
(`measure.decide`): "pass", "unconfirmed" (within the limit, but these images cannot confirm it: it ships,
said plainly with how many images would confirm it), "inside_noise" or "fail" (neither ships).

The climb, cheapest first, stops at the first build that ships:
1. every backend the target lists is built with its quantizer's defaults; where this host is the device,
   they are then timed once, together, in turns (`measure.latency`), so that the machine's drift does not
   decide; backends are visited fastest first, so the first to ship is the fastest that ships.
   "Faster" needs a clear margin (`measure.decide.fastest_first`): two builds of one graph differ by
   more than a few percent from run to run, so a near tie keeps the target file's order and the same
   model compiles to the same backend on every run;
2. on each, the quantizer's other calibration methods, then its accuracy options
   (`Converter.quantizer_settings`);
3. still short: layer groups in FP32 on the fastest backend that can keep them. Only groups whose FP32
   lowers the output error beyond the noise (paired, on calibration images, so the held-out images stay
   unseen) are candidates, most helpful first, added until the build passes; no group is kept for a
   difference inside the noise.
If nothing ships, an EdgekitError lists what every rung achieved (and, when the best build is short only
within the noise, how many images would tell): a build past a limit never ships.

Choosing and judging use different images. The best of several noisy tries is optimistic (a build truly at
98.2 % shows 99 % on 500 images one time in ten, and a ladder that tries four builds keeps the lucky one), so
the climb sees only half of the guard's images and of `--val` (alternate images of the shuffled sets). The
build it chooses is then judged on the other half, which took no part in choosing it, and that verdict is the
one that ships or refuses. Where the chosen build is the first one the climb judged (nothing was chosen
over anything), it is judged on all of the images instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgekit.backends.base import QuantizerSetting
from edgekit.core.errors import EdgekitError
from edgekit.core.progress import QUIET, Progress
from edgekit.measure.decide import VERDICTS, AgreementFloor, Budget, Verdict, fastest_first, worst
from edgekit.measure.stats import Agreement, PairedDifference, mean_interval

CLIMB, CONFIRM = 0, 1  # `Outcome.part`: the half of the images the climb chooses on, the half that judges its choice


class GuardFailure(EdgekitError):
    """No build met the accuracy rules (exit 2); `record` is what every rung achieved, for benchmarks."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


@dataclasses.dataclass(frozen=True)
class Rung:
    backend: str
    setting: QuantizerSetting | None = None  # None: the quantizer's defaults (or the user's --method)
    keep_fp32: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        if self.keep_fp32:
            return "keep_fp32"
        return self.setting.kind if self.setting else "default"

    def describe(self) -> str:
        parts = [self.backend, self.setting.describe() if self.setting else "defaults"]
        if self.keep_fp32:
            parts.append(f"{len(self.keep_fp32)} group(s) in FP32: {', '.join(self.keep_fp32)}")
        return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one build measured. Per-image figures stay here for paired comparisons; `to_dict` keeps the
    summaries."""

    rung: Rung
    # FP32's outputs and the build's on the guard's images (None: no guard images); `guard` summarises them.
    judged: tuple[np.ndarray, np.ndarray] | None = dataclasses.field(default=None, compare=False, repr=False)
    guard: Agreement | None = None
    correct: tuple[bool, ...] | None = None  # labelled --val images: top-1 equals the label (budget)
    reference_correct: tuple[bool, ...] | None = None
    sensitivity_error: tuple[float, ...] = ()  # calibration images: relative logit error against FP32
    p50_ms: float | None = None
    error: str | None = None  # the build itself failed (the converter refused), in words
    share: int = 1  # these figures are on 1/share of the images given (`part`): "images needed" scales by it

    def part(self, half: int) -> Outcome:
        """This build's figures on one half of the images (`CLIMB` or `CONFIRM`): alternate images of the
        guard's and of `--val`, both shuffled sets, so each half is a random half."""

        def of(values: tuple[bool, ...] | None) -> tuple[bool, ...] | None:
            return None if values is None else values[half::2]

        judged = None if self.judged is None else (self.judged[0][half::2], self.judged[1][half::2])
        return dataclasses.replace(
            self,
            judged=judged,
            guard=None if judged is None else Agreement.of(*judged),
            correct=of(self.correct),
            reference_correct=of(self.reference_correct),
            share=2 * self.share,
        )

    @property
    def budget(self) -> PairedDifference | None:
        if self.correct is None or self.reference_correct is None:
            return None
        return PairedDifference.of(self.reference_correct, self.correct)

    def to_dict(self, rules: Rules) -> dict[str, Any]:
        record: dict[str, Any] = {
            "rung": self.rung.kind,
            "backend": self.rung.backend,
            "setting": self.rung.describe(),
            "keep_fp32": list(self.rung.keep_fp32),
            "verdict": rules.verdict(self),
        }
        needed = rules.judge(self).images_needed
        if needed:
            record["images_needed"] = needed  # about how many images (same rates) would settle the verdict
        if self.error:
            record["error"] = self.error
        if self.guard is not None:
            record["guard"] = self.guard.to_dict()
        if self.budget is not None:
            record["vs_fp32_top1"] = self.budget.to_dict()
        if self.p50_ms is not None:
            record["p50_ms"] = self.p50_ms
        return record


@dataclasses.dataclass(frozen=True)
class Rules:
    min_agreement: float | None  # top-1 agreement floor on held-out images, a fraction (None: no guard)
    max_drop_pts: float | None  # top-1 points the build may lose on labelled images (None: no budget)

    def judgements(self, outcome: Outcome) -> list[tuple[Verdict, str, str]]:
        """Each rule's verdict on `outcome` (`measure.decide`), the images it was judged on, and its figures in
        words. "Images needed" counts the images to give: for a half, twice what that half would need."""
        return [
            (dataclasses.replace(v, images_needed=v.images_needed * outcome.share) if v.images_needed else v, n, f)
            for v, n, f in self._judgements(outcome)
        ]

    def _judgements(self, outcome: Outcome) -> list[tuple[Verdict, str, str]]:
        judged = []
        guard, budget = outcome.guard, outcome.budget
        if self.min_agreement is not None and guard is not None:
            low, high = guard.interval()
            figure = (
                f"agreement {guard.rate:.2%} ({low:.1%}–{high:.1%}) on {guard.n} held-out images "
                f"against the {self.min_agreement * 100:g} % floor"
            )
            judged.append((AgreementFloor(self.min_agreement).judge(guard), "held-out images", figure))
        if self.max_drop_pts is not None and budget is not None:
            low, high = budget.interval_pts()
            figure = (
                f"top-1 drop {budget.drop_pts:.2f} pts ({low:.2f} to {high:.2f}) on {budget.n} "
                f"images against the {self.max_drop_pts:g}-point budget"
            )
            judged.append((Budget(self.max_drop_pts).judge(budget), "labelled images", figure))
        return judged

    def judge(self, outcome: Outcome) -> Verdict:
        if outcome.error:
            return Verdict("fail")
        return worst([verdict for verdict, _, _ in self.judgements(outcome)])

    def verdict(self, outcome: Outcome) -> str:
        return self.judge(outcome).verdict

    def noise_note(self, outcome: Outcome) -> str:
        """What these images could not settle about `outcome` (unconfirmed, or inside the noise), and how many
        images would; "" where every rule is settled."""
        judged = self.judgements(outcome)
        return "; ".join(f"{figure}: {words}" for verdict, noun, figure in judged if (words := verdict.words(noun)))


def speeds_text(outcomes: Sequence[Outcome]) -> str:
    """The timed ones of `outcomes` for progress notes: "a p50 1.20 ms, b p50 0.90 ms"."""
    return ", ".join(f"{o.rung.backend} p50 {o.p50_ms:.2f} ms" for o in outcomes if o.p50_ms is not None)


def _rank(outcome: Outcome, rules: Rules) -> tuple[int, float, float]:
    """For "best so far" within a backend (same speed): verdict, then agreement, then top-1."""
    agreement = outcome.guard.rate if outcome.guard is not None else 0.0
    top1 = float(np.mean(outcome.correct)) if outcome.correct else 0.0
    return (VERDICTS.index(rules.verdict(outcome)), agreement, top1)


@dataclasses.dataclass(frozen=True)
class BackendLadder:
    """One backend's rungs: its quantizer's other settings and whether it can keep layer groups in FP32."""

    backend: str
    settings: tuple[QuantizerSetting, ...]
    keeps_layer_groups: bool


def climb(
    ladders: Sequence[BackendLadder],
    evaluate: Callable[[Rung], Outcome],
    rules: Rules,
    groups: Sequence[str],
    progress: Progress = QUIET,
    time_together: Callable[[Sequence[Outcome]], list[Outcome]] | None = None,
) -> tuple[Outcome, dict[str, Any]]:
    """(the build that ships, the record of the climb for the manifest); EdgekitError when none passes.

    The climb decides on the `CLIMB` half of the images; its choice is judged on the `CONFIRM` half (or on
    all of them where it was the first build judged: module docstring). `time_together` times the backends'
    default builds (those this host can time), once, in turns, before they are ranked; later rungs are not
    timed (they are ranked within their backend by their verdicts)."""
    tried: list[Outcome] = []  # every build, on all of the images

    def run(rung: Rung) -> Outcome:
        """Build and measure `rung`; what the climb sees of it (its `CLIMB` half)."""
        tried.append(evaluate(rung))
        outcome = tried[-1].part(CLIMB)
        figures = outcome.error or (outcome.guard.describe() if outcome.guard else "no held-out images")
        if outcome.budget is not None:
            figures += f", top-1 drop {outcome.budget.drop_pts:.2f} pts"
        speed = f", p50 {outcome.p50_ms:.2f} ms" if outcome.p50_ms is not None else ""
        progress.note(f"  {rung.describe()}: {figures}{speed} → {rules.verdict(outcome)}")
        return outcome

    defaults = [run(Rung(ladder.backend)) for ladder in ladders]
    if time_together is not None:
        tried[: len(defaults)] = time_together(tried[: len(defaults)])
        defaults = [outcome.part(CLIMB) for outcome in tried[: len(defaults)]]
        timed = speeds_text(defaults)
        if timed:
            progress.note(f"  timed together, in turns: {timed}")
    order = fastest_first([d.p50_ms for d in defaults])
    best_of: dict[int, Outcome] = {}
    current: Outcome | None = None
    for i in order:  # the fastest backend that passes, with its quantizer's other settings if need be
        best = defaults[i]
        for setting in ladders[i].settings:
            if rules.judge(best).ships:
                break
            outcome = run(Rung(ladders[i].backend, setting))
            if _rank(outcome, rules) > _rank(best, rules):
                best = outcome
        best_of[i] = best
        if current is None or _rank(best, rules) > _rank(current, rules):
            current = best
        if rules.judge(current).ships:
            break
    assert current is not None
    sensitivity: dict[str, Any] | None = None
    if not rules.judge(current).ships:
        # Layer groups in FP32 on the fastest backend that can keep them, from its best setting; only groups
        # whose effect is beyond the noise are candidates (`_keep_groups`).
        keeper = next((i for i in order if ladders[i].keeps_layer_groups and not best_of[i].error), None)
        if keeper is not None:
            kept, sensitivity = _keep_groups(best_of[keeper], groups, run, evaluate, rules, progress)
            if kept is not None and _rank(kept, rules) > _rank(current, rules):
                current = kept
    chosen = next(i for i, o in enumerate(tried) if o.rung == current.rung)
    record: dict[str, Any] = {
        "rules": {
            "min_agreement": rules.min_agreement,
            "max_accuracy_drop_pts": rules.max_drop_pts,
            "test": "Wilson 95 % interval on held-out agreement; paired (discordant images) for comparisons",
            "images": "the climb chooses on half of the images; its choice is judged on the other half",
        },
        "rungs": [o.part(CLIMB).to_dict(rules) for o in tried],
        "chosen": chosen,
    }
    if sensitivity is not None:
        record["sensitivity"] = sensitivity
    if not rules.judge(current).ships:
        lines = "; ".join(f"{o.rung.describe()}: {_summary(o.part(CLIMB))}" for o in tried)
        verdict = rules.verdict(current)
        record["verdict"] = verdict
        noise = f" (the best is short only within the noise: {rules.noise_note(current)})" if verdict != "fail" else ""
        raise GuardFailure(
            f"no build meets the accuracy rules ({_rules_text(rules)}): {lines}{noise}; {_REMEDIES}", record
        )
    # Judged on images that took no part in choosing it; all of them where nothing was chosen over anything.
    judged_on = "all" if current.rung == tried[order[0]].rung else "confirmation"
    final = tried[chosen] if judged_on == "all" else tried[chosen].part(CONFIRM)
    verdict = rules.verdict(final)
    record["verdict"] = verdict
    record["final"] = {**final.to_dict(rules), "judged_on": judged_on}
    if not rules.judge(final).ships:
        where = (
            f"all {_image_count(final)} images" if judged_on == "all"
            else f"the {_image_count(final)} images held back to judge the ladder's choice (of {len(tried)} builds)"
        )  # fmt: skip
        raise GuardFailure(
            f"no build meets the accuracy rules ({_rules_text(rules)}): {current.rung.describe()} met them on the "
            f"half of the images the ladder chooses on ({_summary(current)}), but not on {where}: "
            f"{_summary(final)}, {verdict.replace('_', ' ')}; {_REMEDIES}",
            record,
        )
    note = rules.noise_note(final)
    if note:  # shipped, but not confirmed by these images: said plainly, with how many images would confirm it
        record["note"] = note
        progress.note(f"warning: {note}")
    return tried[chosen], record


_REMEDIES = (
    "lower --min-agreement or raise --max-accuracy-drop if that loss is acceptable, give more or more typical "
    "calibration images, or use --precision fp32 (or fp16 where the target has it)"
)


def _image_count(outcome: Outcome) -> int:
    if outcome.guard is not None:
        return outcome.guard.n
    return len(outcome.correct) if outcome.correct is not None else 0


def _keep_groups(
    base: Outcome,
    groups: Sequence[str],
    run: Callable[[Rung], Outcome],
    evaluate: Callable[[Rung], Outcome],
    rules: Rules,
    progress: Progress,
) -> tuple[Outcome | None, dict[str, Any]]:
    """Keep layer groups in FP32 on `base`'s backend and quantizer setting: measure each group's effect on
    the output error (paired, calibration images), keep the significant ones, add them until one passes."""
    progress.note(f"keeping layer groups in FP32 on {base.rung.backend}: measuring each group's effect")
    effects: dict[str, tuple[float, float, float]] = {}
    for group in progress.bar(groups, desc="sensitivity", total=len(groups), unit="group"):
        trial = evaluate(Rung(base.rung.backend, base.rung.setting, (group,)))
        if trial.error or not trial.sensitivity_error or len(trial.sensitivity_error) != len(base.sensitivity_error):
            continue
        effects[group] = mean_interval([a - b for a, b in zip(base.sensitivity_error, trial.sensitivity_error)])
    significant = sorted((g for g in effects if effects[g][1] > 0), key=lambda g: -effects[g][0])
    record = {
        "images": len(base.sensitivity_error),
        "measure": "reduction of the relative logit error vs FP32, paired, 95 % interval (calibration images)",
        "groups": {
            g: {"reduction": e[0], "ci95": [e[1], e[2]], "significant": g in significant} for g, e in effects.items()
        },
    }
    if not significant:
        progress.note("  no layer group lowers the error beyond the noise: none is kept in FP32")
    best: Outcome | None = None
    for count in range(1, len(significant) + 1):
        outcome = run(Rung(base.rung.backend, base.rung.setting, tuple(significant[:count])))
        if best is None or _rank(outcome, rules) > _rank(best, rules):
            best = outcome
        if rules.judge(outcome).ships:
            return outcome, record
    return best, record


def _rules_text(rules: Rules) -> str:
    parts = []
    if rules.min_agreement is not None:
        parts.append(f"top-1 agreement with FP32 at least {rules.min_agreement * 100:g} % on held-out images")
    if rules.max_drop_pts is not None:
        parts.append(f"top-1 drop at most {rules.max_drop_pts:g} pts on --val")
    return " and ".join(parts)


def _summary(outcome: Outcome) -> str:
    if outcome.error:
        return outcome.error
    parts = []
    if outcome.guard is not None:
        low, high = outcome.guard.interval()
        parts.append(f"agreement {outcome.guard.rate:.2%} ({low:.1%}–{high:.1%})")
    if outcome.budget is not None:
        parts.append(f"drop {outcome.budget.drop_pts:.2f} pts")
    return ", ".join(parts) or "no figures"
