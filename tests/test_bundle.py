"""The bundle round trip: manifest contents, hash verification, tampering, schema versions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgekit
from edgekit.core.errors import BundleError
from edgekit.core.files import sha256_file
from edgekit.runtime.bundle import SCHEMA_VERSION, read_manifest
from tests.conftest import assert_thread_safe, bundle_agreement_with_checkpoint


def test_manifest_records_what_a_deployer_needs(bundle: Path, trained: dict, data_dirs: dict) -> None:
    manifest = read_manifest(bundle).to_dict()
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["edgekit_version"] == edgekit.__version__
    assert manifest["source"]["sha256"] == sha256_file(trained["path"])
    assert manifest["files"] == {"model.onnx": sha256_file(bundle / "model.onnx")}
    assert manifest["classes"] == trained["checkpoint"]["classes"]
    assert manifest["preprocessing"] == trained["checkpoint"]["preprocessing"]
    assert manifest["model"]["transform_input"] is True
    assert manifest["input"]["shape"] == [None, 3, 64, 64] and manifest["target"]["name"] == "x86-cpu"
    assert set(manifest["tools"]) >= {"onnx", "onnxruntime", "torch", "numpy"}
    assert manifest["parity"]["reference"] == "pytorch"
    assert bundle_agreement_with_checkpoint(bundle, trained["path"], data_dirs["val"]) >= 0.995  # measured here
    assert not list(bundle.parent.glob(".*partial*"))


def test_load_and_predict_round_trip(bundle: Path, data_dirs: dict) -> None:
    files = sorted((data_dirs["val"] / "trouser").iterdir())[:4]
    model = edgekit.load(bundle)
    predictions = model.predict(files, top_k=3)
    assert [p.file for p in predictions] == [str(f) for f in files]
    for p in predictions:
        probs = [prob for _, _, prob in p.top_k]
        assert probs == sorted(probs, reverse=True) and 0 < p.prob <= 1
        assert p.label == model.class_names[p.index]
    # Both CPU backends give the same answers for the same bundle.
    assert model.backend == "onnxruntime"
    other = edgekit.load(bundle, backend="openvino")
    assert other.backend == "openvino"
    batch = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(model.probabilities(batch), other.probabilities(batch), atol=1e-4)


@pytest.fixture()
def copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target)
    return target


def test_tampered_model_file_is_refused(copy: Path, run_cli) -> None:
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the sha256"):
        edgekit.load(copy)
    status, _, stderr = run_cli("predict", copy, copy / "model.onnx")
    assert status == 2 and stderr.startswith("error: ") and "sha256" in stderr


def test_missing_file_and_bad_manifest_are_refused(copy: Path, tmp_path: Path) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema 99"):
        edgekit.load(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not JSON"):
        edgekit.load(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="not an edgekit bundle"):
        edgekit.load(copy)


def test_deleted_model_file_is_reported(copy: Path) -> None:
    (copy / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"missing model\.onnx"):
        edgekit.load(copy)


def test_running_a_bundle_needs_no_torch(bundle: Path, data_dirs: dict) -> None:
    image = sorted((data_dirs["val"] / "coat").iterdir())[0]
    code = (
        "import sys, edgekit\n"
        f"p = edgekit.load({str(bundle)!r}).predict([{str(image)!r}])[0]\n"
        "print(p.label, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    label, torch_loaded = result.stdout.split()
    assert label in edgekit.load(bundle).class_names and torch_loaded == "False"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_predict_from_eight_threads_matches_sequential(bundle: Path, backend: str, distinct_images: list[Path]) -> None:
    assert_thread_safe(edgekit.load(bundle, backend=backend), distinct_images)


def test_inspect_shows_accuracy_with_its_interval_and_the_transform_evidence(bundle: Path, edgekit_cli) -> None:
    result = edgekit_cli("inspect", bundle)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(bundle)
    reference = manifest.section("accuracy")["models"]["reference"]
    low, high = reference["top1_ci95"]
    assert low < reference["top1"] < high
    shown = f"{reference['top1']:.2%} (95 % interval {low:.1%}–{high:.1%})"
    assert re.search(r"top-1 reference\s+" + re.escape(shown), result.stdout), result.stdout
    evidence = manifest.section("model")["transform_input_evidence"]
    assert evidence["mismatch_transform_on"] < evidence["mismatch_transform_off"]  # the suite's model: on
    assert re.search(r"transform_input evidence\s+first-layer mismatch 0\.\d\d on / \d\.\d\d off", result.stdout)
