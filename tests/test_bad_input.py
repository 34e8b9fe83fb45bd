"""Every user mistake: exit 2, one `error:` line, no traceback, nothing left on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from tests.conftest import predictions
from tests.test_compile import _external_onnx


def _assert_clean_failure(status: int, stderr: str, out: Path, needle: str) -> None:
    """Exit 2, one `error:` line, nothing on disk. In-process (`run_cli`) a bug would raise out of main()
    and fail the test; whether a traceback reaches the user is checked in subprocesses (`edgekit_cli`)."""
    assert status == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("error: ") and needle in stderr, stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "staging dir left behind"


@pytest.fixture()
def bad_inputs(trained: dict, torch_model: torch.nn.Module, tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["truncated"] = tmp_path / "truncated.pt"
    files["truncated"].write_bytes(trained["path"].read_bytes()[:200_000])
    files["text"] = tmp_path / "notes.pth"
    files["text"].write_text("epoch,loss\n1,0.5\n")
    files["unknown_model"] = tmp_path / "squeezenet.pt"  # a torchvision classifier edgekit does not compile
    torch.save(torchvision.models.squeezenet1_1(weights=None, num_classes=7).state_dict(), files["unknown_model"])
    files["pickled"] = tmp_path / "model_object.pt"
    torch.save(torch_model, files["pickled"])
    good_onnx = tmp_path / "good.onnx"
    _external_onnx(torch_model, good_onnx)
    files["corrupt_onnx"] = tmp_path / "corrupt.onnx"
    files["corrupt_onnx"].write_bytes(good_onnx.read_bytes()[: good_onnx.stat().st_size // 3])
    files["garbage_onnx"] = tmp_path / "garbage.onnx"
    files["garbage_onnx"].write_bytes(os.urandom(4096))
    return files


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("truncated", "truncated or corrupt"),
        ("text", "cannot read"),
        ("unknown_model", "not a torchvision model edgekit knows"),
        ("pickled", "--trust-pickle"),
        ("corrupt_onnx", "ONNX"),
        ("garbage_onnx", "ONNX"),
    ],
)
def test_bad_models(kind: str, needle: str, bad_inputs: dict[str, Path], edgekit_cli, tmp_path: Path) -> None:
    out = tmp_path / "out" / "bundle"
    out.parent.mkdir()
    result = edgekit_cli("compile", bad_inputs[kind], "--out", out)
    _assert_clean_failure(result.returncode, result.stderr, out, needle)
    assert "Traceback" not in result.stderr


def test_unknown_target_fails_before_loading(trained: dict, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    status, _, stderr = run_cli("compile", trained["path"], "--target", "jetson-nanoo", "--out", out)
    _assert_clean_failure(
        status,
        stderr,
        out,
        "unknown target 'jetson-nanoo' (did you mean jetson-nano?); known targets: arm-cpu, datacenter-hopper",
    )


def test_unsupported_precision_fails_before_loading(trained: dict, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    status, _, stderr = run_cli("compile", trained["path"], "--target", "arm-cpu", "--precision", "fp16", "--out", out)
    _assert_clean_failure(status, stderr, out, "does not support precision fp16; it supports fp32, int8")
    status, _, stderr = run_cli("compile", trained["path"], "--precision", "int8", "--out", out)
    _assert_clean_failure(status, stderr, out, "needs calibration images")


@pytest.mark.parametrize("where", ["missing_parent", "under_a_file", "proc"])
def test_unwritable_output(where: str, trained: dict, run_cli, tmp_path: Path) -> None:
    out = {
        "missing_parent": tmp_path / "nope" / "bundle",
        "under_a_file": trained["path"] / "bundle",
        "proc": Path("/proc/edgekit-bundle"),
    }[where]
    status, _, stderr = run_cli("compile", trained["path"], "--out", out)
    assert status == 2 and stderr.startswith("error: cannot write") and len(stderr.splitlines()) == 1, stderr
    assert not out.exists()


def test_existing_output_needs_force_and_force_replaces_only_a_bundle(trained: dict, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    status, _, stderr = run_cli("compile", trained["path"], "--out", out)
    assert status == 2 and "--force" in stderr and (out / "thesis.tex").read_text() == "mine"
    status, _, stderr = run_cli("compile", trained["path"], "--out", out, "--force", "-q")
    assert status == 2 and "not an edgekit bundle" in stderr, stderr
    assert (out / "thesis.tex").read_text() == "mine" and not (out / "manifest.json").exists()
    (out / "thesis.tex").unlink()
    out.rmdir()
    assert run_cli("compile", trained["path"], "--out", out, "-q")[0] == 0
    first = out.stat().st_ino
    status, _, stderr = run_cli("compile", trained["path"], "--out", out, "--force", "-q")
    assert status == 0, stderr
    assert out.stat().st_ino != first  # a new directory took the old bundle's place
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".bundle.")]
    assert (out.stat().st_mode & 0o777) == (0o777 & ~_umask())  # not mkdtemp's 0700


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_empty_and_broken_image_folders(trained: dict, run_cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "bundle"
    status, _, stderr = run_cli("compile", trained["path"], "--val", empty, "--out", out)
    _assert_clean_failure(status, stderr, out, "holds no image files")

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_text("not a jpeg")
    (broken / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    status, _, stderr = run_cli("compile", trained["path"], "--val", broken, "--out", out)
    _assert_clean_failure(status, stderr, out, "none of the 2 image file(s) could be read")


def test_one_broken_image_does_not_stop_the_others(trained: dict, data_dirs: dict, run_cli, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, source in enumerate(sorted((data_dirs["val"] / "coat").iterdir())[:5]):
        Image.open(source).save(folder / f"ok{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")
    out = tmp_path / "bundle"
    status, _, stderr = run_cli("compile", trained["path"], "--val", folder, "--out", out)
    assert status == 0, stderr
    assert "broken.png" in stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parity"]["images"] == 5 and manifest["parity"]["unreadable"] == 1

    status, stdout, _ = run_cli("predict", out, folder, "--json")
    results = {Path(r["file"]).name: r for r in predictions(stdout)}
    assert status == 3 and "error" in results["broken.png"] and results["ok0.png"]["label"]


def test_usage_errors_are_one_line(run_cli, tmp_path: Path) -> None:
    status, _, stderr = run_cli("compile")
    assert status == 2 and stderr.startswith("error: Missing argument") and len(stderr.strip().splitlines()) == 1
    status, _, stderr = run_cli("compile", tmp_path / "x.pt", "--precision", "int4")
    assert status == 2 and stderr.startswith("error: ") and "int4" in stderr and len(stderr.strip().splitlines()) == 1
    status, _, stderr = run_cli("predict", tmp_path, tmp_path / "missing.png")
    assert status == 2 and stderr.startswith("error: ")


def test_interrupt_leaves_no_partial_bundle(trained: dict, data_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Ctrl-C during a real compile (in a subprocess) leaves neither the bundle nor its staging dir."""
    out = tmp_path / "bundle"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # INT8 calibration inside the staging step takes seconds, so the interrupt lands mid-build, not after it.
    command = ["compile", str(trained["path"]), "--precision", "int8", "--backend", "onnxruntime"]
    command += ["--calib", str(data_dirs["train"]), "--out", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "edgekit.cli.main", *command],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A CI runner started in the background inherits SIGINT as ignored (POSIX), and so would the child:
        # give it the default disposition a terminal user has, so Python turns Ctrl-C into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    for line in process.stderr:  # wait until the slow part has started
        if line.startswith("target x86-cpu"):
            break
    deadline = time.time() + 60
    while not list(tmp_path.glob(".bundle.partial-*")) and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130, rest
    assert "error: interrupted" in rest and "Traceback" not in rest
    assert not out.exists() and not list(tmp_path.glob(".bundle.*"))
