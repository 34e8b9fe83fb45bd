"""`edgekit compile` end to end on real images, with real ONNX Runtime and OpenVINO runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import edgekit
from edgekit.data.batches import load_images
from edgekit.data.images import collect_images
from edgekit.data.preprocess import PreprocessSpec
from edgekit.measure.decide import SPEED_MARGIN
from tests.conftest import agreement, assert_json_schema
from tests.test_checkpoint import _forms


def _torch_top1(model: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(inputs)).numpy().argmax(1)


@pytest.fixture(scope="module")
def val_inputs(data_dirs: dict[str, Path], torch_model: torch.nn.Module) -> dict[str, object]:
    """All validation images, preprocessed with the default (ImageNet eval) transform, and the
    PyTorch model's top-1 on them."""
    files = collect_images([data_dirs["val"]])
    inputs = load_images(files, PreprocessSpec()).inputs
    return {"files": files, "inputs": inputs, "torch_top1": _torch_top1(torch_model, inputs)}


@pytest.mark.parametrize(
    ("form", "backend"),
    [
        ("plain", "openvino"),
        ("plain", "onnxruntime"),
        ("no_aux", "openvino"),
        ("model_state_dict", "onnxruntime"),
        ("state_dict", "openvino"),
        ("model", "onnxruntime"),
        ("ddp", "openvino"),
        ("compiled_ddp", "onnxruntime"),
    ],
)
def test_each_checkpoint_form_compiles_and_agrees_with_pytorch(
    form: str, backend: str, trained: dict, data_dirs: dict, val_inputs: dict, run_cli, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "ckpt.pth"
    torch.save(_forms(trained["checkpoint"]["model_state_dict"])[form], checkpoint)
    out = tmp_path / "bundle"
    status, stdout, stderr = run_cli(
        "compile",
        checkpoint,
        "--target",
        "x86-cpu",
        "--backend",
        backend,
        "--out",
        out,
        "--val",
        data_dirs["val"],
        "--parity-images",
        "40",
        "--quiet",
    )
    assert status == 0, stderr
    assert f"bundle: {out}" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == backend and manifest["precision"] == "fp32"
    # None of these forms records transform_input: it is decided from the --val images (the model was trained
    # with it on), not assumed.
    assert manifest["model"]["transform_input"] is True and manifest["model"]["transform_input_source"] == "images"
    assert manifest["preprocessing"]["crop"] == 224  # a bare state_dict carries no preprocessing
    assert manifest["parity"]["images"] == 40  # its agreement is measured here, below, not read back

    model = edgekit.load(out)
    predicted = [p.index for p in model.predict(val_inputs["files"])]
    assert agreement(predicted, val_inputs["torch_top1"]) >= 0.995


def test_edgekit_checkpoint_uses_its_preprocessing_and_reports_accuracy(
    trained: dict, torch_model: torch.nn.Module, data_dirs: dict, run_cli, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    status, stdout, stderr = run_cli("compile", trained["path"], "--out", out, "--val", data_dirs["val"], "--json")
    assert status == 0, stderr
    assert "target x86-cpu (this host; no --target given)" in stderr
    (manifest,) = assert_json_schema(stdout, "compile")
    assert manifest["target"]["name"] == "x86-cpu"
    assert manifest["input"]["shape"] == [None, 3, 64, 64]
    assert manifest["classes"] == trained["checkpoint"]["classes"]
    accuracy = manifest["accuracy"]["models"]
    assert accuracy["bundle"]["top1_agreement_with_reference"] >= 0.995
    assert abs(accuracy["bundle"]["top1"] - accuracy["reference"]["top1"]) <= 0.01
    assert accuracy["bundle"]["top1"] > 1 / 7 + 0.15  # trained on real images: well above chance

    files = collect_images([data_dirs["val"]])
    inputs = load_images(files, PreprocessSpec(resize=72, crop=64)).inputs
    predicted = [p.index for p in edgekit.load(out).predict(files)]
    assert agreement(predicted, _torch_top1(torch_model, inputs)) >= 0.995


def test_no_transform_input_flag_changes_the_model_and_is_recorded(trained: dict, run_cli, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    status, _, stderr = run_cli("compile", trained["path"], "--no-transform-input", "--out", out, "-q")
    assert status == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["transform_input"] is False and manifest["model"]["transform_input_source"] == "flag"
    assert manifest["parity"]["inputs"] == "synthetic"
    status, stdout, _ = run_cli("inspect", out)
    assert status == 0 and "transform_input  False (flag)" in stdout


def _external_onnx(model: torch.nn.Module, path: Path) -> None:
    """What another tool hands over: static batch 1, Softmax at the end, input `data`, opset 11."""
    wrapped = torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval()
    torch.onnx.export(
        wrapped,
        (torch.zeros(1, 3, 224, 224),),
        str(path),
        dynamo=False,
        opset_version=11,
        input_names=["data"],
        output_names=["prob"],
    )


def test_external_onnx_compiles_and_predicts(
    trained: dict, torch_model: torch.nn.Module, data_dirs: dict, val_inputs: dict, run_cli, tmp_path: Path
) -> None:
    source = tmp_path / "someone_elses.onnx"
    _external_onnx(torch_model, source)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(trained["checkpoint"]["classes"]))
    out = tmp_path / "bundle"
    status, _, stderr = run_cli("compile", source, "--classes", names, "--out", out, "--val", data_dirs["val"])
    assert status == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"] == {"name": "data", "shape": [1, 3, 224, 224], "dtype": "float32", "layout": "NCHW"}
    assert manifest["output"]["kind"] == "probabilities" and manifest["onnx_opset"] == 11
    assert manifest["classes"] == trained["checkpoint"]["classes"] and manifest["classes_source"] == "--classes"
    assert manifest["accuracy"]["models"]["bundle"]["top1_agreement_with_reference"] >= 0.995
    assert (out / "model.onnx").read_bytes() == source.read_bytes()
    # No --backend: every FP32 backend of this host's target was built, checked and timed; the fastest won,
    # where a later backend overtakes the target file's first only by a clear margin.
    rungs = manifest["selection"]["rungs"]
    assert [r["backend"] for r in rungs] == ["onnxruntime", "openvino"]
    assert all(r["verdict"] == "pass" and r["p50_ms"] > 0 for r in rungs)
    first, second = (r["p50_ms"] for r in rungs)
    # Ranked on timings taken in turns after both were built, and those are what the manifest records.
    assert f"timed together, in turns: onnxruntime p50 {first:.2f} ms, openvino p50 {second:.2f} ms" in stderr
    expected = 1 if second < (1 - SPEED_MARGIN) * first else 0
    assert manifest["selection"]["chosen"] == expected and rungs[expected]["backend"] == manifest["backend"]

    predictions = edgekit.load(out).predict(val_inputs["files"], top_k=3)
    assert agreement([p.index for p in predictions], val_inputs["torch_top1"]) >= 0.995
    # Output was already a softmax: probabilities must not be squashed a second time.
    with torch.no_grad():
        expected = torch.softmax(torch_model(torch.from_numpy(val_inputs["inputs"][:1])), 1).max().item()
    assert predictions[0].prob == pytest.approx(expected, abs=1e-4)
    assert len(predictions[0].top_k) == 3


def test_pickled_module_compiles_only_with_trust_flag(torch_model: torch.nn.Module, run_cli, tmp_path: Path) -> None:
    path = tmp_path / "model_object.pt"
    torch.save(torch_model, path)
    status, _, stderr = run_cli("compile", path, "--out", tmp_path / "b1")
    assert status == 2 and "--trust-pickle" in stderr and not (tmp_path / "b1").exists()
    status, _, stderr = run_cli("compile", path, "--out", tmp_path / "b2", "--trust-pickle", "-q")
    assert status == 0, stderr
