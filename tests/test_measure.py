"""The decisions made in one place (measure/): the top-1 drop, the fastest candidate within a budget, and
whether this machine is a target's device."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.backends.onnxruntime.run import OnnxRuntimeBackend
from edgekit.backends.tensorrt.run import TensorRTBackend
from edgekit.core.errors import EdgekitError
from edgekit.measure.decide import AgreementFloor, Budget, fastest_that_ships, top1_drop_pts
from edgekit.measure.evaluate import score
from edgekit.measure.host import host_problem, measured_on
from edgekit.measure.stats import PairedDifference, top1_agreement, wilson
from edgekit.optimize.ladder import Outcome, Rules, Rung
from edgekit.optimize.prune import check_accuracy_drop
from edgekit.runtime.bundle import read_manifest
from edgekit.targets import get_target, host_arch

# (name, p50 ms or None when not timed here, paired difference against FP32 or None when not measured)
Row = tuple[str, float | None, PairedDifference | None]


def _drop(points: float, n: int = 1000) -> PairedDifference:
    """A paired difference of `points` top-1 points on n images, with little discordance (decided either way)."""
    lost = round(points * n / 100)
    return PairedDifference(n, max(lost, 0), max(-lost, 0))


def _choose(rows: list[Row], budget: float) -> tuple[str, bool, str]:
    choice = fastest_that_ships(rows, lambda r: r[1], lambda r: r[2], Budget(budget))
    return choice.chosen[0], choice.within_budget, choice.reason


def test_top1_drop_is_in_points_and_signed() -> None:
    assert top1_drop_pts(0.90, 0.875) == pytest.approx(2.5)
    assert top1_drop_pts(0.80, 0.81) == pytest.approx(-1.0)  # the candidate scored higher


def test_fastest_that_ships_skips_faster_candidates_that_lose_too_much() -> None:
    rows: list[Row] = [("fp32", 10.0, _drop(0.0)), ("fp16", 6.0, _drop(0.4)), ("int8", 2.0, _drop(3.0))]
    assert _choose(rows, 1.0)[:2] == ("fp16", True)
    assert _choose(rows, 5.0)[:2] == ("int8", True)
    assert "2 candidate(s) within the 1-point budget" in _choose(rows, 1.0)[2]


def test_a_later_candidate_overtakes_only_by_the_speed_margin() -> None:
    # The same preference as the ladder's backends: within 15 % is a near tie, and the one listed first stays.
    near: list[Row] = [("listed first", 10.0, _drop(0.0)), ("later", 9.0, _drop(0.0))]
    clear: list[Row] = [("listed first", 10.0, _drop(0.0)), ("later", 8.0, _drop(0.0))]
    assert _choose(near, 1.0)[0] == "listed first" and _choose(clear, 1.0)[0] == "later"


def test_when_nothing_ships_the_least_loss_is_chosen_and_flagged() -> None:
    rows: list[Row] = [("a", 1.0, _drop(4.0)), ("b", 5.0, _drop(2.0))]
    name, within, reason = _choose(rows, 1.0)
    assert (name, within) == ("b", False) and "loses least" in reason


def test_untimed_candidates_rank_after_timed_ones_in_the_order_given() -> None:
    # A GPU target not present here: nothing is timed, so the target file's order (fastest first) decides.
    untimed: list[Row] = [("int8", None, _drop(0.5)), ("fp16", None, _drop(0.2)), ("fp32", None, _drop(0.0))]
    assert _choose(untimed, 1.0)[0] == "int8"
    mixed: list[Row] = [("int8", None, _drop(0.5)), ("fp32", 9.0, _drop(0.0))]
    assert _choose(mixed, 1.0)[0] == "fp32"


def test_without_accuracy_the_fastest_is_returned_not_within_budget() -> None:
    name, within, reason = _choose([("slow", 9.0, None), ("quick", 3.0, None)], 1.0)
    assert (name, within) == ("quick", False) and "accuracy was not measured" in reason


@pytest.mark.parametrize(
    ("lost", "gained", "n", "verdict"),
    [
        (5, 0, 1000, "pass"),  # 0.5 pts, the whole interval under 1 point
        (12, 4, 1000, "unconfirmed"),  # 0.8 pts: within 1 point, the interval reaches past it
        (14, 2, 1000, "inside_noise"),  # 1.2 pts: past 1 point, the interval reaches back within it
        (40, 2, 1000, "fail"),  # 3.8 pts: past 1 point beyond the noise
    ],
)
def test_the_budget_verdict_follows_the_drop_and_its_interval(lost: int, gained: int, n: int, verdict: str) -> None:
    difference = PairedDifference(n, lost, gained)
    low, high = difference.interval_pts()
    expected = (
        ("pass" if high <= 1.0 else "unconfirmed")
        if difference.drop_pts <= 1.0
        else ("fail" if low > 1.0 else "inside_noise")
    )
    judged = Budget(1.0).judge(difference)
    assert judged.verdict == expected == verdict
    assert judged.ships == (verdict in ("pass", "unconfirmed"))


@pytest.mark.parametrize(("lost", "gained"), [(12, 4), (14, 2)])
def test_images_needed_is_where_the_same_rates_decide(lost: int, gained: int) -> None:
    judged = Budget(1.0).judge(PairedDifference(1000, lost, gained))
    needed = judged.images_needed
    assert needed is not None and needed > 1000

    def at(count: int) -> str:
        scale = count / 1000
        return Budget(1.0).judge(PairedDifference(count, round(lost * scale), round(gained * scale))).verdict

    assert at(needed) in ("pass", "fail") and at(needed) != judged.verdict
    assert at(int(needed * 0.8)) == judged.verdict  # well short of it, still undecided


def test_a_perfect_guard_on_64_images_is_unconfirmed_not_passed() -> None:
    # 64 of 64 held-out images agree: the Wilson lower bound is 94.3 %, short of a 99 % floor.
    judged = AgreementFloor(0.99).judge(top1_agreement(np.arange(64), np.arange(64)))
    assert judged.verdict == "unconfirmed" and judged.ships
    needed = judged.images_needed
    assert needed is not None and wilson(needed, needed)[0] >= 0.99 > wilson(needed - 1, needed - 1)[0]
    assert "unconfirmed: about" in judged.words("held-out images")


def test_every_entry_point_gives_the_same_verdict_on_the_same_paired_predictions() -> None:
    """Compile's ladder, pruning's check, precision auto / sweep / report (`fastest_that_ships`): one rule."""
    rng = np.random.default_rng(3)
    for lost, gained in [(5, 0), (12, 4), (14, 2), (40, 2)]:
        n = 1000
        reference_correct = np.ones(n, bool)
        candidate_correct = np.ones(n, bool)
        reference_correct[:gained] = False  # the candidate right where FP32 is wrong
        candidate_correct[gained : gained + lost] = False  # and wrong where FP32 is right
        order = rng.permutation(n)
        reference_correct, candidate_correct = reference_correct[order], candidate_correct[order]
        difference = PairedDifference.of(reference_correct, candidate_correct)
        expected = Budget(1.0).judge(difference)

        outcome = Outcome(Rung("x"), correct=tuple(candidate_correct), reference_correct=tuple(reference_correct))
        assert Rules(None, 1.0).judge(outcome) == expected

        report = {
            "top1": {"before": float(reference_correct.mean()), "after": float(candidate_correct.mean())},
            "val_images": n,
            "accuracy": {"drop_vs_original": difference.to_dict()},
        }
        if expected.ships:
            check_accuracy_drop(report, 1.0)
            assert report["verdict"] == expected.verdict
        else:
            with pytest.raises(EdgekitError, match="more than --max-accuracy-drop 1"):
                check_accuracy_drop(report, 1.0)

        labels = np.zeros(n, np.int64)
        scored = score({"reference": 1 - reference_correct, "bundle": 1 - candidate_correct}, labels, ["a", "b"],
                       reference="reference")  # fmt: skip
        recorded = scored["models"]["bundle"]["vs_reference"]
        assert Budget(1.0).judge_counts(recorded) == expected
        choice = fastest_that_ships([recorded], lambda _: 1.0, PairedDifference.of_record, Budget(1.0))
        assert choice.within_budget == expected.ships


def test_a_cpu_target_is_this_host_only_for_the_same_architecture() -> None:
    arch = host_arch()
    this_cpu = get_target("x86-cpu" if arch == "x86_64" else "arm-cpu")
    other_cpu = get_target("arm-cpu" if arch == "x86_64" else "x86-cpu")
    assert host_problem(this_cpu, OnnxRuntimeBackend) is None
    assert measured_on(this_cpu, OnnxRuntimeBackend) == "this host (the target's CPU kind)"
    problem = host_problem(other_cpu, OnnxRuntimeBackend)
    assert problem is not None and other_cpu.arch in problem
    assert "not on the" in measured_on(other_cpu, OnnxRuntimeBackend)


def test_a_gpu_target_is_never_measured_by_a_cpu_runtime_nor_by_tensorrt_without_its_gpu() -> None:
    orin = get_target("jetson-orin-nano")
    assert "runs on the cpu" in (host_problem(orin, OnnxRuntimeBackend) or "")
    assert host_problem(orin, TensorRTBackend) is not None  # no TensorRT and no Orin here


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="needs an x86 host")
def test_pruning_to_an_arm_latency_on_x86_is_refused(trained: dict, tmp_path: Path) -> None:
    """Before, only the target's kind was checked, so an arm-cpu latency target was measured on x86."""
    out = tmp_path / "p.pt"
    result = subprocess.run(
        [sys.executable, "-m", "edgekit.cli.main", "prune", str(trained["path"]), "--target", "arm-cpu",
         "--target-latency", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert "needs latency measured on the device" in lines[0] and "aarch64" in lines[0]
    assert not out.exists()


def test_build_on_a_cpu_bundle_says_what_to_do_and_leaves_it_alone(bundle: Path) -> None:
    before = read_manifest(bundle, verify=True).to_dict()
    result = subprocess.run(
        [sys.executable, "-m", "edgekit.cli.main", "build", str(bundle)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert "compiled for onnxruntime" in lines[0] and "compile for a GPU target first" in lines[0]
    assert read_manifest(bundle, verify=True).to_dict() == before
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(f".{bundle.name}.")]
