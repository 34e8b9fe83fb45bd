"""transform_input decided from the user's images when a checkpoint does not record it (issue 17).

Two real models: the suite's (trained with transform_input on) and one trained here with it off. Saved as
plain state_dicts, neither says how it was trained; compile must find out from the calibration images,
so that the bundle agrees with the model as trained, and say so. A flag that contradicts strong
evidence is obeyed with a warning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import edgekit
from edgekit.data.images import read_image
from edgekit.data.preprocess import PreprocessSpec, preprocess
from edgekit.model import families
from edgekit.model.evidence import transform_input_evidence
from edgekit.model.finetune import FinetuneConfig, run_finetune
from tests.conftest import NUM_CLASSES


@pytest.fixture(scope="module")
def trained_off(data_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A GoogLeNet trained from scratch, which torchvision builds with transform_input off."""
    out = tmp_path_factory.mktemp("off") / "googlenet-off.pt"
    config = FinetuneConfig(
        data=str(data_dirs["train"]), val=data_dirs["val"], out=out, weights="none", epochs=2, lr=0.02,
        resize=72, crop=64, augment=False,
    )  # fmt: skip
    run_finetune(config)
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["transform_input"] is False
    return {"path": out, "checkpoint": checkpoint}


def _plain_state_dict(checkpoint: dict, path: Path) -> Path:
    """What many users save: weights only, nothing about how the model was trained."""
    torch.save(checkpoint["model_state_dict"], path)
    return path


def _true_predictions(checkpoint: dict, files: list[Path]) -> np.ndarray:
    """The model as it was trained (its recorded setting), in PyTorch."""
    model = families.build("googlenet", NUM_CLASSES, transform_input=checkpoint["transform_input"], aux_logits=True)
    model.load_state_dict(checkpoint["model_state_dict"])
    model = families.deployable(model)
    spec = PreprocessSpec(resize=72, crop=64)
    batch = np.stack([preprocess(read_image(f), spec) for f in files])
    with torch.inference_mode():
        return model(torch.from_numpy(batch)).numpy().argmax(1)


@pytest.mark.parametrize("setting", ["on", "off"])
def test_unrecorded_transform_input_is_decided_from_images(
    setting: str, trained: dict, trained_off: dict, data_dirs: dict, run_cli, tmp_path: Path
) -> None:
    checkpoint = trained["checkpoint"] if setting == "on" else trained_off["checkpoint"]
    model = _plain_state_dict(checkpoint, tmp_path / "weights.pth")
    out = tmp_path / "bundle"
    status, _, stderr = run_cli(
        "compile", model, "--resize", "72", "--crop", "64", "--calib", data_dirs["train"], "--out", out
    )
    assert status == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["transform_input"] is (setting == "on")
    assert manifest["model"]["transform_input_source"] == "images"
    evidence = manifest["model"]["transform_input_evidence"]
    assert evidence["strong"] and evidence["images"] == 64
    assert f"transform_input={setting == 'on'}, decided from your images" in stderr
    files = [p for folder in sorted(data_dirs["val"].iterdir()) for p in sorted(folder.iterdir())[:6]]
    bundle = np.array([p.index for p in edgekit.load(out).predict(files)])
    assert np.mean(bundle == _true_predictions(checkpoint, files)) >= 0.95  # the model as trained, not chance


def test_a_flag_against_strong_evidence_is_obeyed_with_a_warning(
    trained_off: dict, data_dirs: dict, run_cli, tmp_path: Path
) -> None:
    model = _plain_state_dict(trained_off["checkpoint"], tmp_path / "weights.pth")
    out = tmp_path / "bundle"
    status, _, stderr = run_cli(
        "compile", model, "--resize", "72", "--crop", "64", "--transform-input", "--calib", data_dirs["train"],
        "--out", out,
    )  # fmt: skip
    assert status == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["transform_input"] is True and manifest["model"]["transform_input_source"] == "flag"
    assert "warning: transform_input=True (flag) but the first layer's statistics on your images say False" in stderr


def test_without_images_the_default_is_stated(trained_off: dict, run_cli, tmp_path: Path) -> None:
    model = _plain_state_dict(trained_off["checkpoint"], tmp_path / "weights.pth")
    status, _, stderr = run_cli("compile", model, "--resize", "72", "--crop", "64", "--out", tmp_path / "b")
    assert status == 0, stderr
    assert "does not record transform_input; assumed on" in stderr and "--no-transform-input" in stderr


def test_evidence_flags_preprocessing_that_fits_neither_setting(trained: dict, data_dirs: dict) -> None:
    model = families.build("googlenet", NUM_CLASSES, transform_input=True, aux_logits=True)
    model.load_state_dict(trained["checkpoint"]["model_state_dict"])
    model = families.deployable(model)
    files = [p for folder in sorted(data_dirs["val"].iterdir()) for p in sorted(folder.iterdir())[:4]]
    right = np.stack([preprocess(read_image(f), PreprocessSpec(resize=72, crop=64)) for f in files])
    assert transform_input_evidence(model, right).preprocessing_fits
    wrong = right * 4.0  # e.g. pixels in 0..255 scaled by a mean/std meant for 0..1 (too bright, too spread)
    evidence = transform_input_evidence(model, wrong)
    assert evidence is not None and not evidence.preprocessing_fits


def _renamed_copy(val: Path, out: Path, order: str) -> Path:
    """The labelled folder with sub-directories renamed so that their sorted order is the model's output order
    ("same") or its reverse ("reversed")."""
    import shutil

    names = sorted(p.name for p in val.iterdir())
    for i, name in enumerate(names):
        rank = i if order == "same" else len(names) - 1 - i
        shutil.copytree(val / name, out / f"{rank}_{name}")
    return out


@pytest.mark.parametrize("order", ["same", "reversed"])
def test_generated_class_names_say_the_mapping_and_warn_at_chance(
    order: str, trained: dict, data_dirs: dict, run_cli, tmp_path: Path
) -> None:
    model = _plain_state_dict(trained["checkpoint"], tmp_path / "weights.pth")
    val = _renamed_copy(data_dirs["val"], tmp_path / "val", order)
    out = tmp_path / "bundle"
    args = ["compile", model, "--resize", "72", "--crop", "64", "--transform-input", "--val", val, "--out", out]
    status, _, stderr = run_cli(*args)
    assert status == 0, stderr
    first = sorted(p.name for p in val.iterdir())[0]
    assert f"maps by sorted sub-directory (ImageFolder's order): {first}→output 0" in stderr
    reference = json.loads((out / "manifest.json").read_text())["accuracy"]["models"]["reference"]
    low, high = reference["top1_ci95"]
    assert low <= reference["top1"] <= high
    warned = "the folder's class order probably differs" in stderr or "no better than guessing" in stderr
    assert warned == (order == "reversed"), (reference["top1"], stderr)


def test_wilson_interval_matches_published_values() -> None:
    from edgekit.measure.stats import indistinguishable_from_chance, wilson

    low, high = wilson(8, 10)  # Newcombe (1998), Table I: 0.4902 – 0.9433
    assert abs(low - 0.4902) < 1e-4 and abs(high - 0.9433) < 1e-4
    low, high = wilson(0, 10)  # 0 – 0.2775
    assert low == 0.0 and abs(high - 0.2775) < 1e-4
    assert indistinguishable_from_chance(20, 140, 7) and not indistinguishable_from_chance(100, 140, 7)


def test_bench_and_prune_take_classes_like_compile(trained: dict, data_dirs: dict, run_cli, tmp_path: Path) -> None:
    """Folders whose sorted order is the reverse of the model's outputs: --classes names the outputs, so bench
    and prune match the folders by name, as compile does."""
    model = _plain_state_dict(trained["checkpoint"], tmp_path / "weights.pth")
    val = _renamed_copy(data_dirs["val"], tmp_path / "val", "reversed")
    by_output = sorted((p.name for p in val.iterdir()), key=lambda name: -int(name.split("_")[0]))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(by_output))
    out = tmp_path / "bundle"
    common = ["--resize", "72", "--crop", "64", "--transform-input"]
    assert run_cli("compile", model, *common, "--classes", names, "--out", out, "-q")[0] == 0

    def bench(*extra: str | Path) -> tuple[dict, str]:
        status, stdout, stderr = run_cli("bench", out, "--val", val, "--iterations", "1", "--batch-sizes", "1",
                                         "--out", tmp_path / "bench", "--json", *extra)  # fmt: skip
        assert status == 0, stderr
        models = json.loads(stdout)["accuracy"]["models"]
        return {**models["bundle"], "reference_top1": models["reference"]["top1"]}, stderr

    named, stderr = bench()  # the bundle recorded the names: matched by name already
    # Matched by name, the bundle scores what its FP32 reference scores on these folders, far above chance.
    assert named["top1"] == pytest.approx(named["reference_top1"], abs=0.02) and named["top1"] > 1 / 7 + 0.3
    assert "probably" not in stderr
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("\n".join(reversed(by_output)))  # the folders' sorted order: what a guess would give
    guessed, stderr = bench("--classes", wrong)
    assert guessed["top1"] < named["top1"] and ("probably" in stderr or "guessing" in stderr)
    status, _, stderr = run_cli(
        "bench", out, "--val", val, "--classes", tmp_path / "weights.pth", "--out", tmp_path / "b2"
    )
    assert status == 2 and stderr.startswith("error:") and len(stderr.strip().splitlines()) == 1

    pruned = tmp_path / "pruned.pt"
    status, stdout, stderr = run_cli(
        "prune", model, *common[:4], "--prune-ratio", "0.1", "--val", val, "--classes", names, "--out", pruned, "--json"
    )
    assert status == 0, stderr
    report = json.loads(stdout)
    checkpoint = torch.load(pruned, weights_only=True)
    assert checkpoint["classes"] == by_output
    # Matched by name, the unpruned model scores what bench measured on the same folder (same images).
    assert report["top1"]["before"] == pytest.approx(named["top1"], abs=0.02)
