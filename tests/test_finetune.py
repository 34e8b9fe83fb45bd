"""`edgekit finetune`: what each mode trains, aux heads, resume, DDP, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

import edgekit
from edgekit.core.errors import EdgekitError
from edgekit.data.preprocess import PreprocessSpec
from edgekit.model import families
from edgekit.model.checkpoint import save_checkpoint
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.model.freeze import active_aux_heads, apply_freeze, frozen_blocks
from edgekit.model.transfer import starting_point
from edgekit.train.objectives import LabelLoss

AUX = families.aux_heads("googlenet")
# GoogLeNet's blocks in forward order, written out: the list users read in --freeze-until's error
BLOCKS = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
          "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4", "inception5a",
          "inception5b")  # fmt: skip
TINY = {
    "data": "fashion-mnist",
    "per_class": 8,
    "val_per_class": 4,
    "class_subset": (0, 1, 2),
    "resize": 36,
    "crop": 32,
}


def _tiny(out: Path, **overrides: object) -> FinetuneConfig:
    return FinetuneConfig(out=out, **{**TINY, "epochs": 1, "batch_size": 8, "augment": False, **overrides})


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefix: str) -> bool:
    keys = [k for k in before if k.startswith(prefix + ".")]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


@pytest.mark.parametrize(
    ("mode", "freeze_until"),
    [("feature-extract", None), ("hybrid", "inception4a"), ("hybrid", "conv3"), ("finetune", None)],
)
def test_each_mode_trains_exactly_what_it_says(
    mode: str, freeze_until: str | None, trained: dict, tmp_path: Path
) -> None:
    torch.manual_seed(0)  # as run_finetune does, so the new heads start from the same init
    start = starting_point(str(trained["path"]), ("tshirt_top", "trouser", "pullover"))
    frozen = frozen_blocks(mode, freeze_until, BLOCKS, "googlenet")
    apply_freeze(start.model, AUX, frozen)
    for name in BLOCKS:
        grads = {p.requires_grad for p in getattr(start.model, name).parameters()}
        assert grads <= {name not in frozen}
    assert all(p.requires_grad for p in start.model.fc.parameters())

    before = {k: v.clone() for k, v in start.model.state_dict().items()}
    out = tmp_path / "m.pt"
    run_finetune(_tiny(out, weights=str(trained["path"]), mode=mode, freeze_until=freeze_until))
    after = torch.load(out, weights_only=True)["model_state_dict"]
    for name in BLOCKS:
        if any(True for _ in getattr(start.model, name).parameters()):
            # Frozen blocks keep weights *and* BatchNorm statistics.
            assert _changed(before, after, name) == (name not in frozen), name
    assert _changed(before, after, "fc")
    for head in AUX:
        assert _changed(before, after, head.module) == (head in active_aux_heads(AUX, frozen)), head


def test_aux_heads_get_gradients_and_are_gone_after_export(trained: dict, tmp_path: Path, run_cli) -> None:
    start = starting_point(str(trained["path"]), ("a", "b", "c"))
    start.model.train()
    targets = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    loss, _ = LabelLoss({"aux_logits1": 0.3, "aux_logits2": 0.3})(
        start.model(torch.randn(4, 3, 64, 64)), torch.empty(0), targets
    )
    loss.backward()
    for head in (start.model.aux1, start.model.aux2):
        assert head.fc2.weight.grad is not None and head.fc2.weight.grad.abs().sum() > 0

    out = tmp_path / "ft.pt"
    run_finetune(_tiny(out, weights=str(trained["path"]), mode="hybrid", freeze_until="inception3b"))
    assert any(k.startswith("aux2.") for k in torch.load(out, weights_only=True)["model_state_dict"])
    status, _, stderr = run_cli("compile", out, "--out", tmp_path / "bundle", "-q")
    assert status == 0, stderr
    import onnx

    graph = onnx.load(str(tmp_path / "bundle" / "model.onnx")).graph
    assert not [i.name for i in graph.initializer if "aux" in i.name]
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3


def test_imagenet_style_weights_transfer(tmp_path: Path) -> None:
    imagenet = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, num_classes=1000)
    path = tmp_path / "googlenet-1378be20.pth"
    torch.save(imagenet.state_dict(), path)
    start = starting_point(str(path), ("x", "y"))
    assert start.transform_input is True and start.pretrained
    assert start.model.fc.out_features == 2 and "1000 → 2 new classes" in start.description
    torch.testing.assert_close(start.model.conv1.conv.weight, imagenet.conv1.conv.weight)
    assert starting_point("none", ("x", "y")).transform_input is False


def test_checkpoint_compiles_and_bundle_agrees(tmp_path: Path, data_dirs: dict, run_cli) -> None:
    out = tmp_path / "scratch.pt"
    summary = run_finetune(_tiny(out, epochs=2, lr=0.05))
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["mode"] == "finetune" and checkpoint["classes"] == ["tshirt_top", "trouser", "pullover"]
    assert checkpoint["preprocessing"] == PreprocessSpec(resize=36, crop=32).to_dict()
    assert checkpoint["recipe"]["lr"] == 0.05 and len(summary["history"]) == 2
    status, _, stderr = run_cli("compile", out, "--out", tmp_path / "bundle", "-q")
    assert status == 0, stderr
    from edgekit.model.checkpoint import load_checkpoint

    model = load_checkpoint(out).module
    files = sorted((data_dirs["val"] / "trouser").iterdir())[:10] + sorted((data_dirs["val"] / "coat").iterdir())[:10]
    bundle = edgekit.load(tmp_path / "bundle")
    from edgekit.data.batches import load_images

    inputs = load_images(files, bundle.preprocessing).inputs
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).argmax(1).tolist()
    assert [p.index for p in bundle.predict(files)] == expected


def test_resume_continues_from_saved_epoch(tmp_path: Path) -> None:
    out = tmp_path / "r.pt"
    first = run_finetune(_tiny(out, epochs=2, lr=0.05))
    last = torch.load(out.with_name("r.last.pt"), weights_only=True)
    assert last["epoch"] == 2 and "optimizer_state_dict" in last
    resumed = run_finetune(_tiny(out, epochs=3, lr=0.05, resume=True))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][:2] == first["history"]
    assert torch.load(out.with_name("r.last.pt"), weights_only=True)["epoch"] == 3


def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "edgekit.cli.main", "finetune",
        "--data", "fashion-mnist", "--weights", "none", "--per-class", "8", "--val-per-class", "4",
        "--class-subset", "0,1,2", "--resize", "36", "--crop", "32", "--epochs", "1", "--batch-size", "4",
        "--out", str(out), "--json", "--quiet",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)  # only rank 0 prints
    assert summary["world_size"] == 2 and out.is_file()
    assert summary["train_images"] == 24 and torch.load(out, weights_only=True)["epoch"] == 1


def test_interrupted_save_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "good.pt"
    save_checkpoint({"epoch": 1}, out)

    def interrupted(obj: object, path: str) -> None:
        Path(path).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, out)
    monkeypatch.undo()
    assert torch.load(out, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["good.pt"]


def _folder(root: Path, classes: dict[str, int], broken: dict[str, int] | None = None) -> Path:
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("L", (28, 28), color=i * 20).save(root / name / f"{i}.png")
    for name, count in (broken or {}).items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / name / f"bad{i}.jpg").write_text("not an image")
    return root


def test_unreadable_files_are_counted_and_skipped(tmp_path: Path) -> None:
    data = _folder(tmp_path / "data", {"a": 6, "b": 6}, broken={"a": 2})
    summary = run_finetune(FinetuneConfig(data=str(data), out=tmp_path / "m.pt", epochs=1, resize=36, crop=32))
    assert len(summary["unreadable"]) == 2 and summary["train_images"] + summary["val_images"] == 12


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("empty", "no labelled images"),
        ("single_class", "single class"),
        ("unreadable_class", "hold no readable images"),
        ("val_differs", "train and validation classes differ"),
        ("unknown_model", "not a torchvision model edgekit knows"),
        ("wrong_arch", "is not a torchvision googlenet checkpoint"),
        ("bad_block", "is not a block of googlenet"),
        ("unwritable", "cannot write"),
        ("frozen_scratch", "needs pretrained --weights"),
    ],
)
def test_bad_input(case: str, needle: str, tmp_path: Path, run_cli) -> None:
    data = _folder(tmp_path / "data", {"a": 4, "b": 4})
    args = [
        "finetune",
        "--data",
        data,
        "--weights",
        "none",
        "--out",
        tmp_path / "m.pt",
        "--crop",
        "32",
        "--resize",
        "36",
    ]
    if case == "empty":
        args[2] = tmp_path / "empty"
        (tmp_path / "empty").mkdir()
    elif case == "single_class":
        args[2] = _folder(tmp_path / "one", {"a": 4})
    elif case == "unreadable_class":
        args[2] = _folder(tmp_path / "mixed", {"a": 4}, broken={"b": 3})
    elif case == "val_differs":
        args += ["--val", _folder(tmp_path / "val", {"a": 2, "c": 2})]
    elif case == "unknown_model":
        torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), tmp_path / "s.pt")
        args[4] = tmp_path / "s.pt"
    elif case == "wrong_arch":
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r.pt")
        args[4] = tmp_path / "r.pt"
        args += ["--arch", "googlenet"]
    elif case == "bad_block":
        torch.save(torchvision.models.googlenet(weights=None, init_weights=True).state_dict(), tmp_path / "g.pt")
        args[4] = tmp_path / "g.pt"
        args += ["--mode", "hybrid", "--freeze-until", "inception9z"]
    elif case == "unwritable":
        args[6] = tmp_path / "missing" / "m.pt"
    elif case == "frozen_scratch":
        args += ["--mode", "feature-extract"]
    status, _, stderr = run_cli(*args)
    assert status == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: ") and needle in stderr, stderr
    assert not (tmp_path / "m.pt").exists()


def test_mode_rules() -> None:
    assert families.blocks(families.build("googlenet", 3, aux_logits=True)) == BLOCKS
    assert frozen_blocks("feature-extract", None, BLOCKS, "googlenet") == BLOCKS
    assert active_aux_heads(AUX, BLOCKS) == ()
    assert frozen_blocks("finetune", None, BLOCKS, "googlenet") == ()
    assert frozen_blocks("hybrid", "inception4b", BLOCKS, "googlenet")[-1] == "inception4b"
    assert [h.module for h in active_aux_heads(AUX, frozen_blocks("hybrid", "inception4b", BLOCKS, "g"))] == ["aux2"]
    with pytest.raises(EdgekitError):
        frozen_blocks("hybrid", None, BLOCKS, "googlenet")
