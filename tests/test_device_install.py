"""The device install, for real: a new virtual environment with `pip install edgekit` (no extra) plus the
runtime the bundle names, running the device commands on a bundle compiled by the workstation install.

It must hold none of the workstation's packages, and a workstation command must say how to get them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import predictions

ROOT = Path(__file__).resolve().parent.parent
WORKSTATION_PACKAGES = {
    "torch", "torchvision", "onnx", "openvino", "nncf", "torch-pruning", "torch_pruning", "matplotlib",
    "onnxconverter-common", "litert-torch", "ai-edge-quantizer",
}  # fmt: skip


def _edgekit(venv: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(venv / "bin" / "edgekit"), *map(str, args)], capture_output=True, text=True, timeout=600, env=env,
        cwd=venv.parent,  # not the repository: the installed package must be what runs
    )  # fmt: skip


def test_device_install_holds_no_workstation_package(device_venv: Path) -> None:
    listed = subprocess.run(
        [str(device_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    installed = {row["name"].lower() for row in json.loads(listed.stdout)}
    assert "edgekit" in installed and "onnxruntime" in installed
    assert not installed & WORKSTATION_PACKAGES, installed & WORKSTATION_PACKAGES


def test_device_install_runs_the_device_commands(device_venv: Path, bundle: Path, image: Path, data_dirs: dict) -> None:
    result = _edgekit(device_venv, "predict", bundle, image, "--json")
    assert result.returncode == 0, result.stderr
    assert predictions(result.stdout)[0]["label"]

    result = _edgekit(device_venv, "inspect", bundle)
    assert result.returncode == 0 and "verified" in result.stdout, result.stderr

    out = device_venv.parent / "bench"
    result = _edgekit(
        device_venv, "bench", bundle, "--val", data_dirs["val"], "--iterations", "2", "--batch-sizes", "1",
        "--out", out, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    bench = json.loads(result.stdout)
    assert bench["accuracy"]["models"]["bundle"]["top1"] > 0.3
    assert any("torch is not installed" in note for note in bench["notes"])  # the PyTorch reference is skipped

    result = _edgekit(device_venv, "doctor", "--json")
    assert result.returncode == 0, result.stderr
    doctor = {f["topic"]: f for f in json.loads(result.stdout)["findings"]}
    assert doctor["onnxruntime"]["status"] == "ok" and doctor["openvino"]["status"] == "missing"
    assert doctor["openvino"]["fix"].startswith("pip install")
    assert "device install" in doctor["workstation side"]["detail"]
    assert doctor["gpu"]["detail"].startswith("no GPU")


@pytest.mark.parametrize("command", ["compile", "finetune"])
def test_workstation_commands_name_the_install_command(device_venv: Path, command: str, trained: dict) -> None:
    finetune = ["--data", "fashion-mnist", "--weights", "none", "--out", device_venv.parent / "x.pt"]
    args = [trained["path"]] if command == "compile" else finetune
    result = _edgekit(device_venv, command, *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "needs the workstation extra" in lines[0] and "pip install 'edgekit[workstation]'" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_runtime_the_device_lacks_is_named_with_its_install_command(
    device_venv: Path, bundle: Path, image: Path
) -> None:
    result = _edgekit(device_venv, "predict", bundle, image, "--backend", "openvino")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "openvino is not installed (pip install openvino)" in lines[0]


def test_reference_checkpoint_without_torch_is_a_user_error(device_venv: Path, bundle: Path, trained: dict) -> None:
    result = _edgekit(device_venv, "bench", bundle, "--reference", trained["path"], "--iterations", "1")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "pip install 'edgekit[workstation]'" in lines[0], (
        result.stderr
    )
