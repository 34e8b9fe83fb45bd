"""The commands users type: predict and bench output, inspect, targets, help, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_json_schema, json_records


def test_predict_json_format(bundle: Path, data_dirs: dict, run_cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_text("no")
    images = sorted((data_dirs["val"] / "sandal").iterdir())[:3]
    status, stdout, stderr = run_cli("predict", bundle, *images, broken, "--json", "--top-k", "2")
    assert status == 3 and "error: 1 of 4 image file(s) could not be read" in stderr
    rows = json_records(stdout)
    assert [row["type"] for row in rows] == ["prediction"] * 3 + ["error", "summary"]
    assert [row["file"] for row in rows[:4]] == [str(p) for p in [*images, broken]]
    for row in rows[:3]:
        assert set(row) >= {"file", "index", "label", "prob"} and isinstance(row["index"], int)
        assert len(row["top_k"]) == 2
    assert set(rows[3]) == {"json_version", "command", "type", "file", "error"}
    assert {k: rows[4][k] for k in ("images", "predicted", "failed")} == {"images": 4, "predicted": 3, "failed": 1}


def test_predict_text_output_and_directories(bundle: Path, data_dirs: dict, run_cli) -> None:
    status, stdout, _ = run_cli("predict", bundle, data_dirs["val"] / "sandal")
    lines = stdout.strip().splitlines()
    assert status == 0 and len(lines) == len(list((data_dirs["val"] / "sandal").iterdir()))
    assert all("\t" in line for line in lines)


def test_bench_json(bundle: Path, trained: dict, data_dirs: dict, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "results"
    status, stdout, stderr = run_cli(
        "bench",
        bundle,
        "--reference",
        trained["path"],
        "--val",
        data_dirs["val"],
        "--batch-sizes",
        "1,4",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--out",
        out,
        "--json",
    )
    assert status == 0, stderr
    (results,) = assert_json_schema(stdout, "bench")
    assert results["p50_ms"] == results["latency"]["bundle"][0]["p50_ms"] > 0
    assert [row["batch"] for row in results["latency"]["bundle"]] == [1, 4]
    assert [row["batch"] for row in results["latency"]["reference"]] == [1, 4]
    for row in [*results["latency"]["bundle"], *results["latency"]["reference"]]:
        # The one timing loop's record: p50 is the median of the samples it keeps; 3 calls support no tail.
        assert row["iterations"] == len(row["samples_ms"]) == 3
        assert row["p50_ms"] == pytest.approx(float(np.median(row["samples_ms"])), abs=1e-3)
        assert row["p90_ms"] is None and row["p99_ms"] is None
        assert row["images_per_s"] == pytest.approx(row["batch"] * 1000 / row["p50_ms"])
    accuracy = results["accuracy"]["models"]
    assert accuracy["bundle"]["top1_agreement_with_reference"] >= 0.995
    assert results["accuracy"]["images"] == 140
    assert results["environment"]["threads"] >= 1 and results["environment"]["cpu"]
    assert results["reference"]["kind"] == "pytorch"
    assert json.loads((out / "bench.json").read_text())["p50_ms"] == results["p50_ms"]
    markdown = (out / "bench.md").read_text()
    assert "| bundle | 1 |" in markdown and "| reference | 4 |" in markdown


def test_bench_finds_the_source_checkpoint_by_itself(bundle: Path, run_cli, tmp_path: Path) -> None:
    status, stdout, stderr = run_cli(
        "bench", bundle, "--iterations", "2", "--batch-sizes", "1", "--out", tmp_path, "--json"
    )
    assert status == 0, stderr
    results = json.loads(stdout)
    assert results["reference"]["kind"] == "pytorch" and results["accuracy"] is None
    assert any("source model" in note for note in results["notes"])


def test_bench_rejects_unlabelled_val(bundle: Path, tmp_path: Path, data_dirs: dict, run_cli) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in sorted((data_dirs["val"] / "coat").iterdir())[:2]:
        (flat / image.name).write_bytes(image.read_bytes())
    status, _, stderr = run_cli("bench", bundle, "--val", flat, "--iterations", "1", "--out", tmp_path / "r")
    assert status == 2 and "no class sub-directories" in stderr


def test_inspect_everything(bundle: Path, trained: dict, run_cli) -> None:
    status, stdout, _ = run_cli("inspect", bundle, "--json")
    info = json.loads(stdout)
    assert status == 0 and info["kind"] == "bundle" and info["verified"] is True
    status, stdout, _ = run_cli("inspect", trained["path"], "--json")
    info = json.loads(stdout)
    assert info["kind"] == "checkpoint" and info["transform_input"] is True and info["num_classes"] == 7
    status, stdout, _ = run_cli("inspect", bundle / "model.onnx", "--json")
    assert json.loads(stdout)["output_kind"] == "logits"


def test_targets_listing(run_cli) -> None:
    status, stdout, _ = run_cli("targets", "--json")
    rows = {row["name"]: row for row in json.loads(stdout)["targets"]}
    assert status == 0 and {"x86-cpu", "arm-cpu"} <= set(rows)
    assert rows["x86-cpu"]["backends_available_here"] == {
        "fp32": ["onnxruntime", "openvino"],
        "int8": ["openvino", "onnxruntime"],
        "fp16": ["openvino"],
    }


@pytest.mark.parametrize(
    "command",
    [[], ["compile"], ["predict"], ["bench"], ["inspect"], ["targets"], ["prune"], ["report"], ["sweep"], ["finetune"]],
)
def test_help_everywhere(command: list[str], run_cli) -> None:
    status, stdout, _ = run_cli(*command, "--help")
    assert status == 0 and "Usage: edgekit" in stdout


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from edgekit.cli.main import main\n"
        "for command in ('compile', 'prune', 'report', 'sweep'):\n"
        "    try:\n        main([command, '--help'])\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'numpy', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "HEAVY:"
