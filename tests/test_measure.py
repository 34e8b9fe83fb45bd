"""The decisions made in one place (measure/): the top-1 drop, the fastest candidate within a budget, and
whether this machine is a target's device."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.backends.onnxruntime.run import OnnxRuntimeBackend
from edgekit.backends.tensorrt.run import TensorRTBackend
from edgekit.measure.decide import fastest_within_budget, top1_drop_pts
from edgekit.measure.host import host_problem, measured_on
from edgekit.runtime.bundle import read_manifest
from edgekit.targets import get_target, host_arch

# (name, p50 ms or None when not timed here, top-1 drop in points or None when not measured)
Row = tuple[str, float | None, float | None]


def _choose(rows: list[Row], budget: float) -> tuple[str, bool, str]:
    choice = fastest_within_budget(rows, lambda r: r[1], lambda r: r[2], budget)
    return choice.chosen[0], choice.within_budget, choice.reason


def test_top1_drop_is_in_points_and_signed() -> None:
    assert top1_drop_pts(0.90, 0.875) == pytest.approx(2.5)
    assert top1_drop_pts(0.80, 0.81) == pytest.approx(-1.0)  # the candidate scored higher


def test_fastest_within_budget_skips_faster_candidates_that_lose_too_much() -> None:
    rows: list[Row] = [("fp32", 10.0, 0.0), ("fp16", 6.0, 0.4), ("int8", 2.0, 3.0)]
    assert _choose(rows, 1.0)[:2] == ("fp16", True)
    assert _choose(rows, 5.0)[:2] == ("int8", True)
    assert "2 candidate(s) within the 1-point budget" in _choose(rows, 1.0)[2]


def test_when_nothing_fits_the_least_loss_is_chosen_and_flagged() -> None:
    rows: list[Row] = [("a", 1.0, 4.0), ("b", 5.0, 2.0)]
    name, within, reason = _choose(rows, 1.0)
    assert (name, within) == ("b", False) and "loses least" in reason


def test_untimed_candidates_rank_after_timed_ones_in_the_order_given() -> None:
    # A GPU target not present here: nothing is timed, so the target file's order (fastest first) decides.
    untimed: list[Row] = [("int8", None, 0.5), ("fp16", None, 0.2), ("fp32", None, 0.0)]
    assert _choose(untimed, 1.0)[0] == "int8"
    mixed: list[Row] = [("int8", None, 0.5), ("fp32", 9.0, 0.0)]
    assert _choose(mixed, 1.0)[0] == "fp32"


def test_without_accuracy_the_fastest_is_returned_not_within_budget() -> None:
    name, within, reason = _choose([("slow", 9.0, None), ("quick", 3.0, None)], 1.0)
    assert (name, within) == ("quick", False) and "accuracy was not measured" in reason


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
