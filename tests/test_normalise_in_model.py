"""`compile --normalise-in-model`: the shipped model takes the uint8 RGB crop and normalises it itself, on
ONNX Runtime (four ONNX nodes in front) and OpenVINO (its PrePostProcessor), with the agreement against the
float input measured and recorded; a bundle that says so is run that way, and one that lies is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import edgekit
from edgekit.core.errors import BundleError
from edgekit.data.images import collect_images, read_image
from edgekit.data.preprocess import PreprocessSpec, float_input, normalise, pixels_of, resize_and_crop


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))))
def test_pixels_of_recovers_exactly_the_pixels_a_batch_was_normalised_from(pixels: np.ndarray) -> None:
    spec = PreprocessSpec()
    batch = normalise(Image.fromarray(pixels), spec)[None]
    assert np.array_equal(pixels_of(batch, spec)[0], pixels)
    assert np.array_equal(float_input(pixels[None], spec), batch)  # and back, as a reference takes it


@pytest.fixture(scope="module")
def float_bundle(trained: dict, data_dirs: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgekit.pipeline.compile import compile_bundle
    from edgekit.pipeline.compile_config import CompileConfig

    out = tmp_path_factory.mktemp("float") / "b"
    compile_bundle(CompileConfig(model=trained["path"], target="x86-cpu", backend="openvino", out=out,
                                 val=data_dirs["val"], precision="int8", calib=data_dirs["train"]))  # fmt: skip
    return out


@pytest.mark.parametrize(
    ("backend", "precision", "model_file"),
    [("onnxruntime", "fp32", "model.onnx"), ("openvino", "int8", "model.xml")],
)
def test_a_bundle_that_normalises_itself_takes_pixels_and_predicts_like_float_input(
    trained: dict, data_dirs: dict, run_cli, tmp_path: Path, bundle: Path, float_bundle: Path,
    backend: str, precision: str, model_file: str,
) -> None:  # fmt: skip
    out = tmp_path / "pixels"
    status, stdout, stderr = run_cli(
        "compile", trained["path"], "--backend", backend, "--precision", precision, "--calib", data_dirs["train"],
        "--val", data_dirs["val"], "--normalise-in-model", "--out", out, "--json",
    )  # fmt: skip
    assert status == 0, stderr
    manifest = json.loads(stdout)
    crop = manifest["preprocessing"]["crop"]
    assert manifest["preprocessing"]["normalise_in_model"] is True
    assert manifest["input"]["shape"][1:] == [crop, crop, 3]
    assert (manifest["input"]["dtype"], manifest["input"]["layout"]) == ("uint8", "NHWC")
    assert manifest["model_file"] == model_file
    check = manifest["normalisation_check"]
    assert check["images"] == len(collect_images([data_dirs["val"]]))
    # The fold changes float rounding only: FP32 keeps every label; INT8 may move a value across a step.
    assert check["top1_agreement_with_float_input"] >= (1.0 if precision == "fp32" else 0.97)
    if precision == "fp32":
        assert check["max_abs_diff"] < 1e-3

    folded = edgekit.load(out)
    unfolded = edgekit.load(bundle if precision == "fp32" else float_bundle)
    files = collect_images([data_dirs["val"]])[:40]
    labels = [p.index for p in folded.predict(files)]
    reference = [p.index for p in unfolded.predict(files)]
    assert np.mean(np.equal(labels, reference)) >= (1.0 if precision == "fp32" else 0.95)

    # An integrator feeds raw crops: the resized, centre-cropped uint8 pixels, nothing else.
    spec = folded.preprocessing
    crops = np.stack([np.asarray(resize_and_crop(read_image(f), spec)) for f in files[:8]])
    assert crops.dtype == np.uint8
    assert list(folded.probabilities(crops).argmax(1)) == labels[:8]

    if backend == "onnxruntime":  # bench times the trip with pixels fed to the model, and its own latency
        status, stdout, stderr = run_cli(
            "bench", out, "--images", data_dirs["val"], "--batch-sizes", "1,2", "--iterations", "2",
            "--out", tmp_path / "bench", "--json",
        )  # fmt: skip
        assert status == 0, stderr
        results = json.loads(stdout)
        assert [row["batch"] for row in results["latency"]["bundle"]] == [1, 2]
        trip = results["end_to_end"]["exact"]
        assert trip["images"] > 0 and trip["network_ms"] > 0 and trip["normalise_ms"] > 0
        status, shown, _ = run_cli("inspect", out)
        assert status == 0 and "normalises uint8 NHWC pixels itself" in shown and "[None, 64, 64, 3]" in shown


def test_only_backends_that_can_take_pixels_fold_and_the_rest_exit_2(
    trained: dict, tmp_path: Path, edgekit_cli
) -> None:
    result = edgekit_cli(
        "compile", trained["path"], "--backend", "litert", "--normalise-in-model", "--out", tmp_path / "x"
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --normalise-in-model") and "onnxruntime" in lines[0]
    assert not (tmp_path / "x").exists()


def test_a_manifest_whose_input_does_not_match_its_preprocessing_is_refused(bundle: Path, tmp_path: Path) -> None:
    lying = tmp_path / "lying"
    shutil.copytree(bundle, lying)
    manifest = json.loads((lying / "manifest.json").read_text())
    manifest["preprocessing"]["normalise_in_model"] = True  # the float model does not take pixels
    (lying / "manifest.json").write_text(json.dumps(manifest))  # the files' hashes still match
    with pytest.raises(BundleError, match="NHWC uint8"):
        edgekit.load(lying)
    manifest["input"].update(layout="NHWC", dtype="uint8", shape=[None, 64, 64, 3])
    (lying / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not take the input"):  # the model's own input is float NCHW
        edgekit.load(lying)
