"""The budget decides the pruning ratio (optimize/prune_search.py): a real search on a GoogLeNet trained on
real images, its resume after an interruption, its honest accounting, and the bisection's decisions on
synthetic candidates whose accuracy is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.core.errors import EdgekitError
from edgekit.core.progress import Progress
from edgekit.data.preprocess import PreprocessSpec
from edgekit.measure.stats import PairedDifference, wilson
from edgekit.optimize import prune_search
from edgekit.optimize.prune import LatencyProbe, PruneData, PruneOutcome
from edgekit.optimize.prune_config import PruneConfig, PruneSettings
from edgekit.pipeline.prune import run_prune
from edgekit.targets import get_target
from tests.test_bad_input import _assert_clean_failure


class Interrupt(Progress):
    """Progress that presses Ctrl-C when a note starts with `when` (after the notes before it took effect)."""

    def __init__(self, when: str) -> None:
        super().__init__(enabled=False)
        self.when, self.notes = when, []

    def note(self, message: str) -> None:
        self.notes.append(message)
        if message.startswith(self.when):
            raise KeyboardInterrupt


class Notes(Progress):
    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def _settings(data_dirs: dict[str, Path], budget: float, seed: int = 0) -> PruneSettings:
    return PruneSettings(
        search_drop_pts=budget, search_step=0.4, max_ratio=0.8, recover_data=data_dirs["train"], recover_epochs=1,
        distill=True, recover_lr=0.005, seed=seed,
    )  # fmt: skip


def test_search_resumes_after_an_interruption_and_records_the_drop_against_the_original(
    trained: dict, data_dirs: dict[str, Path], run_cli, tmp_path: Path
) -> None:
    out = tmp_path / "searched.pt"
    state = tmp_path / ".searched.pt.prune-search"
    config = PruneConfig(trained["path"], out, _settings(data_dirs, 100.0), get_target("x86-cpu"), val=data_dirs["val"])
    # Ctrl-C while the second candidate (80 %) trains: the first (40 %) is kept, nothing is written.
    interrupted = Interrupt("ratio 80%: pruning")
    with pytest.raises(KeyboardInterrupt):
        run_prune(config, interrupted)
    assert any(n.startswith("ratio 40%: pruning and recovering") for n in interrupted.notes)
    assert not out.exists() and sorted(p.name for p in state.iterdir()) == [
        "identity", "ratio-0.4000.json", "ratio-0.4000.pt"
    ]  # fmt: skip

    # The same search from the command line (another budget: the candidates do not depend on it) reuses the
    # 40 % candidate and trains only the 80 % one.
    status, stdout, stderr = run_cli(
        "prune", trained["path"], "--out", out, "--max-accuracy-drop", "100", "--recover-data", data_dirs["train"],
        "--recover-epochs", "1", "--distill", "--recover-lr", "0.005", "--search-step", "0.4", "--max-ratio", "0.8",
        "--val", data_dirs["val"],
    )  # fmt: skip
    assert status == 0, stderr
    assert "ratio 40%: trained by an earlier run of this search, reused" in stderr
    assert "ratio 40%: pruning" not in stderr and "ratio 80%: pruning and recovering" in stderr
    assert not state.exists() and out.is_file()  # the search's state goes once the checkpoint is written
    assert "against the original" in stdout and "chose 80%" in stdout

    # A 100-point budget passes everything: the largest candidate wins, and the record says why.
    report = torch.load(out, weights_only=True)["pruning"]
    search = report["search"]
    assert report["mode"] == "search" and search["chosen"] == 0.8 and report["ratio"] == 0.8
    assert [t["ratio"] for t in search["tried"]] == [0.4, 0.8] and all(t["verdict"] == "pass" for t in search["tried"])
    # Honest accounting: original, pruned and final top-1 on the same images, each with its interval, and the
    # drop against the original computed from the per-image results (paired).
    accuracy = report["accuracy"]
    n = accuracy["original"]["images"]
    assert n == report["val_images"] == sum(1 for _ in data_dirs["val"].rglob("*.png"))
    for name in ("original", "pruned", "final"):
        correct = round(accuracy[name]["top1"] * n)
        assert accuracy[name]["ci95"] == pytest.approx(list(wilson(correct, n))) and accuracy[name]["images"] == n
    drop = accuracy["drop_vs_original"]
    expected = 100 * (accuracy["original"]["top1"] - accuracy["final"]["top1"])
    assert drop["drop_pts"] == pytest.approx(expected) and drop["images"] == n
    assert drop["drop_pts"] == pytest.approx(100 * (drop["lost"] - drop["gained"]) / n)  # paired: discordant only
    paired = PairedDifference(n, drop["lost"], drop["gained"])
    assert drop["ci95_pts"] == pytest.approx(list(paired.interval_pts()))
    assert report["top1"]["before"] == accuracy["original"]["top1"]


def test_another_search_in_the_state_directory_starts_afresh(
    trained: dict, data_dirs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "searched.pt"
    config = PruneConfig(trained["path"], out, _settings(data_dirs, 100.0), get_target("x86-cpu"), val=data_dirs["val"])
    with pytest.raises(KeyboardInterrupt):
        run_prune(config, Interrupt("ratio 40%: pruning"))
    # Other settings (a different seed trains different candidates): the old state is not reused.
    other = PruneConfig(
        trained["path"], out, _settings(data_dirs, 100.0, seed=1), get_target("x86-cpu"), val=data_dirs["val"]
    )
    notes = Interrupt("ratio 40%: pruning")
    with pytest.raises(KeyboardInterrupt):
        run_prune(other, notes)
    assert any("holds another search" in n for n in notes.notes)
    # The same settings again: the state is this search's own, so no fresh start.
    again = Interrupt("ratio 40%: pruning")
    with pytest.raises(KeyboardInterrupt):
        run_prune(other, again)
    assert not any("holds another search" in n for n in again.notes)


def _synthetic(
    monkeypatch: pytest.MonkeyPatch, drops: dict[float, int | tuple[int, int]], n: int = 1000
) -> tuple[list[float], PruneData]:
    """Candidates whose final model gets `drops[ratio]` more of n images wrong than the original, or, for a
    (lost, gained) pair, loses that many images the original got right and gains that many it got wrong."""
    calls: list[float] = []
    original = np.ones(n, dtype=bool)
    original[-100:] = False  # the original's own mistakes, some of which a candidate may fix

    def prune(module, settings, spec, data, latency, progress, original_correct, before):  # type: ignore[no-untyped-def]
        calls.append(settings.ratio)
        lost, gained = drops[settings.ratio] if isinstance(drops[settings.ratio], tuple) else (drops[settings.ratio], 0)
        final = original.copy()
        final[:lost] = False
        final[n - 100 : n - 100 + gained] = True
        report = {"macs_removed": settings.ratio, "top1": {}, "before": {"macs": 1}}
        return PruneOutcome(module, report, final, original_correct)

    monkeypatch.setattr(prune_search, "prune_module", prune)
    monkeypatch.setattr(prune_search, "correct_per_image", lambda module, dataset, spec: original)
    return calls, PruneData(train=None, val=object())  # type: ignore[arg-type]


def test_bisection_finds_the_largest_ratio_within_the_budget_in_few_steps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ratios = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    # Drop in points (of 1000 images: 10 images = 1 pt): within 1 pt up to 0.5, then beyond.
    calls, data = _synthetic(monkeypatch, {0.1: 0, 0.2: 2, 0.3: 4, 0.4: 6, 0.5: 10, 0.6: 14, 0.7: 30, 0.8: 60})
    settings = PruneSettings(search_drop_pts=1.0, search_step=0.1, max_ratio=0.8)
    assert prune_search.candidate_ratios(settings) == ratios
    state = prune_search.SearchState(tmp_path / "state", "x", Notes())
    outcome, record = prune_search.search_ratio(
        torch.nn.Linear(1, 1), settings, PreprocessSpec(), data, LatencyProbe(lambda m: (None, 0), ""), state
    )
    assert record["chosen"] == 0.5 and outcome.report["macs_removed"] == 0.5
    verdicts = {t["ratio"]: t["verdict"] for t in record["tried"]}
    assert verdicts[0.5] == "pass" and all(v != "pass" for r, v in verdicts.items() if r > 0.5)
    # 10 images lost, none gained: the interval's upper end is the drop itself, within the budget: confirmed.
    assert record["confirmed"] is True and "images_needed" not in record
    # 15 lost and 10 gained (0.5 pts) passes, but the interval reaches above 1 pt: not confirmed, and how many
    # images would confirm it is said.
    _, data = _synthetic(monkeypatch, {0.4: (15, 10), 0.8: 60}, n=1000)
    notes = Notes()
    state = prune_search.SearchState(tmp_path / "state2", "y", Notes())
    small = PruneSettings(search_drop_pts=1.0, search_step=0.4, max_ratio=0.8)
    _, record = prune_search.search_ratio(torch.nn.Linear(1, 1), small, PreprocessSpec(), data,
                                          LatencyProbe(lambda m: (None, 0), ""), state, notes)  # fmt: skip
    assert record["chosen"] == 0.4 and record["confirmed"] is False and record["images_needed"] > 1000
    assert any(n.startswith("warning: the chosen ratio's drop, 0.50 pts") for n in notes.notes)
    assert len(calls) <= 4 and sorted(calls) == sorted(set(calls))  # log2(8) + 1 at most, none twice


def test_a_drop_above_the_budget_inside_the_noise_is_refused_and_says_how_many_images_would_tell(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Every candidate loses 1.5 pts on 200 images: above a 1-point budget, but not beyond the noise.
    _, data = _synthetic(monkeypatch, {0.4: 3, 0.8: 3}, n=200)
    settings = PruneSettings(search_drop_pts=1.0, search_step=0.4, max_ratio=0.8)
    state = prune_search.SearchState(tmp_path / "state", "x", Notes())
    with pytest.raises(EdgekitError) as failure:
        prune_search.search_ratio(
            torch.nn.Linear(1, 1), settings, PreprocessSpec(), data, LatencyProbe(lambda m: (None, 0), ""), state
        )
    message = str(failure.value)
    assert "no pruning ratio keeps top-1 within 1 points" in message and "40%" in message
    assert "inside the noise" in message and "labelled images would decide" in message
    assert "Nothing was written" in message and str(state.directory) in message


def test_search_without_recovery_data_or_labels_is_refused(trained: dict, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "p.pt"
    status, _, err = run_cli("prune", trained["path"], "--out", out, "--max-accuracy-drop", "1")
    _assert_clean_failure(status, err, out, "pass --recover-data DIR")
    status, _, err = run_cli("compile", trained["path"], "--prune-ratio", "auto", "--out", tmp_path / "b")
    assert status == 2 and err.startswith("error: ") and "--max-accuracy-drop" in err, err
    assert len(err.strip().splitlines()) == 1


def test_recovery_distils_by_default_and_no_distill_turns_it_off(trained: dict, run_cli, tmp_path: Path) -> None:
    from edgekit.cli.options import prune_settings

    def parsed(distill: bool | None, recover: Path | None) -> PruneSettings:
        values = {"prune_ratio": (0.3,), "target_macs": None, "target_latency": None, "importance": "l2",
                  "scope": "uniform", "steps": 1, "round_to": 8, "max_ratio": 0.8, "sparsity": None,
                  "recover_data": recover, "recover_unlabelled": None, "recover_augment": "light",
                  "accelerator": "auto", "amp": "auto", "workers": None, "channels_last": None,
                  "recover_epochs": None, "recover_lr": 0.01, "distill": distill,
                  "temperature": 4.0, "search_step": 0.1, "feature_distill": 0.0, "lr_schedule": "cosine"}  # fmt: skip
        return prune_settings(values, None)

    assert parsed(None, tmp_path).distilling and not parsed(False, tmp_path).distilling
    assert not parsed(None, None).distilling  # nothing to recover on: nothing to distil
    # --distill without recovery images is still a mistake, said before anything loads.
    out = tmp_path / "p.pt"
    status, _, err = run_cli("prune", trained["path"], "--out", out, "--prune-ratio", "0.3", "--distill")
    _assert_clean_failure(status, err, out, "--distill happens during recovery")


def test_feature_distillation_matches_the_stage_outputs_and_leaves_no_hooks(torch_model: torch.nn.Module) -> None:
    import copy

    from edgekit.model.families import stage_ends
    from edgekit.optimize.recover import FeatureMatch

    teacher, student = copy.deepcopy(torch_model).eval(), copy.deepcopy(torch_model).eval()
    example = torch.zeros(2, 3, 64, 64)
    points = stage_ends(student, example)
    assert points == ("inception3b", "inception4e", "inception5b")  # the end of each inception stage
    match = FeatureMatch(student, teacher, points, example)
    with torch.no_grad():
        for adapter in match.adapters.values():  # same channels here: identity adapters
            adapter.weight.copy_(torch.eye(adapter.weight.shape[0]).view_as(adapter.weight))
        images = torch.randn(4, 3, 64, 64)
        student(images), teacher(images)
        assert float(match.loss()) < 1e-8  # the same model matches itself
        student.inception5b.branch1.conv.weight.mul_(0.5)
        student(images), teacher(images)
        assert float(match.loss()) > 1e-4  # a changed stage does not
    match.close()
    assert all(not getattr(m, point)._forward_hooks for m in (student, teacher) for point in points)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--feature-distill", "-1"], "cannot be negative"),
        (["--feature-distill", "1", "--no-distill"], "does not go with --no-distill"),
        (["--lr-schedule", "sometimes"], "sometimes"),
    ],
)
def test_recovery_options_are_checked_before_loading(
    trained: dict, run_cli, tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "p.pt"
    status, _, err = run_cli("prune", trained["path"], "--out", out, "--prune-ratio", "0.3", "--recover-data", tmp_path,
                             *args)  # fmt: skip
    _assert_clean_failure(status, err, out, needle)
