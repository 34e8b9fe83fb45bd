"""Training on a real CUDA GPU: the model and every step on it, the loss falling, torchrun with NCCL, and
mixed precision (BF16 where the GPU has it, FP16 with a gradient scaler). Skipped without a CUDA GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.train.settings import TrainingSettings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")
ROOT = Path(__file__).resolve().parents[2]
SMALL = {"data": "fashion-mnist", "weights": "none", "per_class": 64, "val_per_class": 16, "class_subset": (0, 1, 7),
         "resize": 72, "crop": 64, "batch_size": 32, "lr": 0.05}  # fmt: skip


def test_an_epoch_on_the_gpu_keeps_everything_there_and_the_loss_falls(tmp_path: Path) -> None:
    seen: set[str] = set()
    original = torch.nn.Module.__call__

    def record(module: torch.nn.Module, *args: object, **kwargs: object) -> object:
        seen.update(str(p.device.type) for p in module.parameters(recurse=False))
        seen.update(str(a.device.type) for a in args if isinstance(a, torch.Tensor))
        return original(module, *args, **kwargs)

    torch.nn.Module.__call__ = record  # type: ignore[method-assign]
    try:
        summary = run_finetune(
            FinetuneConfig(out=tmp_path / "m.pt", epochs=3, training=TrainingSettings(accelerator="cuda"), **SMALL)
        )
    finally:
        torch.nn.Module.__call__ = original  # type: ignore[method-assign]
    assert seen == {"cuda"}, seen  # no module ran on the CPU, no CPU tensor went into one
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0], losses
    checkpoint = torch.load(tmp_path / "m.pt", weights_only=True)
    assert checkpoint["training"]["device"] == "cuda:0" and checkpoint["training"]["name"].startswith("cuda:0 (")


@pytest.mark.parametrize("amp", ["auto", "fp16"])
def test_mixed_precision_trains(amp: str, tmp_path: Path) -> None:
    summary = run_finetune(
        FinetuneConfig(out=tmp_path / "m.pt", epochs=2, training=TrainingSettings(accelerator="cuda", amp=amp), **SMALL)
    )
    native_bf16 = torch.cuda.get_device_capability(0)[0] >= 8  # Ampere and newer
    expected = "fp16" if amp == "fp16" or not native_bf16 else "bf16"
    assert summary["training"]["amp"] == expected
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in summary["history"])
    if expected == "fp16":  # the gradient scaler ran and its state is saved for --resume
        scaler = torch.load(tmp_path / "m.last.pt", weights_only=True)["scaler_state_dict"]
        assert scaler and scaler["scale"] > 0


def test_torchrun_one_process_per_gpu_over_nccl(tmp_path: Path) -> None:
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    command = [
        torchrun, "--standalone", "--nproc_per_node", "1", "-m", "edgekit.cli.main", "finetune", "--data",
        "fashion-mnist", "--weights", "none", "--per-class", "32", "--val-per-class", "8", "--class-subset",
        "0,1,7", "--resize", "72", "--crop", "64", "--epochs", "2", "--accelerator", "cuda",
        "--out", str(tmp_path / "m.pt"), "--json", "--quiet",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    training = json.loads(result.stdout)["training"]
    assert training["process_group"] == "nccl" and training["device"] == "cuda:0" and training["processes"] == 1
