"""Outputs that cannot cost the user data, and inputs that cannot exhaust the machine, run as a user runs
edgekit (subprocesses): signals, concurrent compiles, `--out .`, a full disk, a file-size limit, image
bombs, FIFOs and devices, huge numbers and hostile metadata."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from edgekit.core.errors import EdgekitError
from edgekit.data import images as images_module
from edgekit.data.images import read_image
from tests.conftest import predictions


def _one_error_line(result: subprocess.CompletedProcess[str], needle: str, status: int = 2) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def _leftovers(directory: Path, name: str) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(f".{name}.")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(signum: int, trained: dict, data_dirs: dict, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    command = [sys.executable, "-m", "edgekit.cli.main", "compile", str(trained["path"]), "--precision", "int8"]
    command += ["--backend", "onnxruntime", "--calib", str(data_dirs["train"]), "--out", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    deadline = time.time() + 120
    while not list(tmp_path.glob(".bundle.partial-*")) and time.time() < deadline:  # mid-build
        time.sleep(0.01)
    assert list(tmp_path.glob(".bundle.partial-*")), "the compile never started staging"
    process.send_signal(signum)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 128 + signum, rest
    assert f"error: stopped by {signal.Signals(signum).name}; nothing was written" in rest
    assert "Traceback" not in rest
    assert not out.exists() and not _leftovers(tmp_path, "bundle")


def test_out_dot_with_force_inside_a_bundle_is_refused(
    bundle: Path, trained: dict, edgekit_cli, tmp_path: Path
) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    before = sorted(p.name for p in copy.iterdir())
    result = edgekit_cli("compile", trained["path"], "--out", ".", "--force", cwd=copy)
    _one_error_line(result, "is the current directory or one above it")
    assert sorted(p.name for p in copy.iterdir()) == before and not _leftovers(tmp_path, "bundle")


def test_two_compiles_to_one_out_never_both_succeed(trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    command = [sys.executable, "-m", "edgekit.cli.main", "compile", str(trained["path"]), "--out", str(out), "-q"]
    processes = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in processes]
    statuses = sorted(status for status, _ in results)
    assert statuses == [0, 2], results
    loser = next(err for status, err in results if status == 2)
    assert loser.startswith("error: ") and ("another process" in loser or "already exists" in loser), loser
    import edgekit

    assert edgekit.load(out).class_names  # the winner's bundle, whole
    assert not _leftovers(tmp_path, "bundle")


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_file_size_limit_is_a_user_error_and_leaves_nothing(trained: dict, edgekit_cli, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = edgekit_cli("compile", trained["path"], "--out", out, "-q", preexec_fn=_limit_file_size)
    _one_error_line(result, "file-size limit")
    assert not out.exists() and not _leftovers(tmp_path, "bundle")


def test_full_disk_is_a_user_error_and_leaves_nothing(trained: dict, edgekit_cli, tmp_path: Path) -> None:
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = edgekit_cli("compile", trained["path"], "--out", disk / "bundle", "-q")
        _one_error_line(result, "the disk is full")
        assert os.listdir(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_huge_threads_and_nested_classes_json(trained: dict, edgekit_cli, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    _one_error_line(edgekit_cli("compile", trained["path"], "--threads", str(2**40), "--out", out), "--threads")
    classes = tmp_path / "classes.json"
    classes.write_text("[" * 200_000 + "]" * 200_000)
    _one_error_line(edgekit_cli("compile", trained["path"], "--classes", classes, "--out", out), "nests too deeply")
    assert not out.exists()


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [
        ({"class_to_idx": {"coat": "first"}}, "'class_to_idx' cannot be read as class names"),
        ({"idx_to_class": {"zero": "coat"}}, "'idx_to_class' cannot be read as class names"),
        ({"classes": 7}, "'classes' cannot be read as class names"),
    ],
)
def test_bad_class_metadata_in_a_checkpoint(
    metadata: dict, needle: str, trained: dict, edgekit_cli, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "model.pt"
    torch.save({"model_state_dict": trained["checkpoint"]["model_state_dict"], **metadata}, checkpoint)
    out = tmp_path / "bundle"
    _one_error_line(edgekit_cli("compile", checkpoint, "--out", out), needle)
    assert not out.exists()


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PNG of 13,000 × 13,000 pixels in a few hundred kB: 500 MB once decoded as RGB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (13_000, 13_000)).save(path, optimize=True)
    return path


def test_image_bombs_are_refused_before_decoding(bundle: Path, bomb: Path, image: Path, edgekit_cli) -> None:
    assert bomb.stat().st_size < 2_000_000
    result = edgekit_cli("predict", bundle, bomb, image, "--json")
    assert result.returncode == 3, result.stderr
    rows = {Path(r["file"]).name: r for r in predictions(result.stdout)}
    assert "13000×13000 pixels is more than the 120,000,000" in rows["bomb.png"]["error"]
    assert rows[image.name]["label"]
    result = edgekit_cli("predict", bundle, image, env={**os.environ, "EDGEKIT_MAX_IMAGE_PIXELS": "100"})
    _one_error_line(result, "none of the 1 image file(s) could be read")
    assert "more than the 100 edgekit decodes" in result.stdout


def test_devices_and_fifos_are_named_for_what_they_are(bundle: Path, image: Path, edgekit_cli, tmp_path: Path) -> None:
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)  # nobody writes to it: opening it blocking would hang predict
    result = edgekit_cli("predict", bundle, "/dev/null", fifo, image, "--json", timeout=120)
    assert result.returncode == 3, result.stderr
    rows = {r["file"]: r for r in predictions(result.stdout)}
    assert "not a regular file" in rows["/dev/null"]["error"] and "not a regular file" in rows[str(fifo)]["error"]
    _one_error_line(edgekit_cli("predict", bundle, tmp_path / "missing.jpg"), "does not exist")


@pytest.mark.parametrize("code", [errno.EMFILE, errno.EIO])
def test_machine_errors_stop_the_run_instead_of_blaming_the_image(
    code: int, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_open(path: object, flags: int, *args: object) -> int:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(images_module.os, "open", failing_open)
    with pytest.raises(EdgekitError, match="a problem of this machine, not of the image"):
        read_image(image)
