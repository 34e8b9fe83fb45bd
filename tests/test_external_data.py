"""ONNX files that keep their weights in other files (issue 31): taken in when legitimate, refused with one
line when a location leaves the model's folder, and never handed to a runtime from inside a bundle."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from edgekit.core import onnx_external
from edgekit.core.onnx_external import NotOnnx, external_tensors


def _tiny_classifier(seed: int = 0) -> onnx.ModelProto:
    """A real 3-class image classifier graph (conv → pool → matmul), with an If whose branch holds a tensor
    attribute: a subgraph too, as exporters write them."""
    rng = np.random.default_rng(seed)
    weights = {
        "conv_w": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
        "fc_w": rng.normal(size=(8, 3)).astype(np.float32),
        "fc_b": rng.normal(size=(3,)).astype(np.float32),
    }
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["bias"], value=numpy_helper.from_array(np.full(3, 0.5, np.float32)))],
        "then", [], [helper.make_tensor_value_info("bias", TensorProto.FLOAT, [3])],
    )  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["input", "conv_w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc_w"], ["m"]),
        helper.make_node("Constant", [], ["yes"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("If", ["yes"], ["extra"], then_branch=branch, else_branch=branch),
        helper.make_node("Add", ["m", "fc_b"], ["m2"]),
        helper.make_node("Add", ["m2", "extra"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _save_external(model: onnx.ModelProto, path: Path, location: str = "model.data", **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=True, location=location, size_threshold=0, **kwargs)


def _onnx_verdict(model: onnx.ModelProto) -> set[str]:
    """onnx's own answer: the tensors it says use external data (subgraphs and attributes included)."""
    return {t.name for t in external_data_helper._get_all_tensors(model) if external_data_helper.uses_external_data(t)}


def test_field_numbers_are_onnx_s_own() -> None:
    numbers = {
        ("ModelProto", "graph"): 7, ("ModelProto", "functions"): 25, ("ModelProto", "training_info"): 20,
        ("GraphProto", "node"): 1, ("GraphProto", "initializer"): 5, ("GraphProto", "sparse_initializer"): 15,
        ("NodeProto", "attribute"): 5, ("AttributeProto", "t"): 5, ("AttributeProto", "g"): 6,
        ("AttributeProto", "tensors"): 10, ("AttributeProto", "graphs"): 11, ("AttributeProto", "sparse_tensor"): 22,
        ("AttributeProto", "sparse_tensors"): 23, ("FunctionProto", "node"): 7,
        ("FunctionProto", "attribute_proto"): 11,
        ("SparseTensorProto", "values"): 1, ("SparseTensorProto", "indices"): 2,
        ("TrainingInfoProto", "initialization"): 1, ("TrainingInfoProto", "algorithm"): 2,
    }  # fmt: skip
    for (message, field), number in numbers.items():
        assert getattr(onnx, message).DESCRIPTOR.fields_by_name[field].number == number
        holder = onnx_external._SCHEMA[message]
        target = getattr(onnx, message).DESCRIPTOR.fields_by_name[field].message_type.name
        assert holder[number] == target, (message, field)
    tensor = onnx.TensorProto.DESCRIPTOR.fields_by_name
    assert tensor["name"].number == onnx_external.TENSOR_NAME
    assert tensor["external_data"].number == onnx_external.TENSOR_EXTERNAL_DATA
    assert tensor["data_location"].number == onnx_external.TENSOR_DATA_LOCATION
    assert onnx.TensorProto.EXTERNAL == onnx_external.EXTERNAL


@pytest.mark.parametrize("one_file", [True, False])
def test_the_scan_agrees_with_onnx_on_files_onnx_wrote(tmp_path: Path, one_file: bool) -> None:
    model = _tiny_classifier()
    path = tmp_path / "m.onnx"
    _save_external(model, path, all_tensors_to_one_file=one_file)
    raw = path.read_bytes()
    found = external_tensors(raw)
    assert {t.name for t in found} == _onnx_verdict(onnx.load(str(path), load_external_data=False))
    assert {t.name for t in found} >= {"conv_w", "fc_w", "fc_b"}  # the If branch's constant too, where moved
    for tensor in found:
        assert (tmp_path / tensor.location).is_file() and int(tensor.length) > 0
    assert external_tensors(_tiny_classifier().SerializeToString()) == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_the_scan_never_fails_other_than_not_onnx(data: bytes) -> None:
    with contextlib.suppress(NotOnnx):  # anything else (IndexError, RecursionError) would fail here
        external_tensors(data)


def _compile(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edgekit.cli.main", "compile", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)


def _one_error_line(result: subprocess.CompletedProcess[str], needle: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr


def test_a_model_with_external_data_compiles_self_contained_from_any_directory(tmp_path: Path) -> None:
    """The issue's case: the weights beside the model, compiled from another working directory (where ONNX
    Runtime, given bytes, used to look)."""
    model = _tiny_classifier()
    source = tmp_path / "export" / "classifier.onnx"
    _save_external(model, source, location="classifier.weights")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "bundle"
    result = _compile(source, "--out", out, "--crop", "32", "--resize", "36", "-q", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    data_sha = manifest["source"]["external_data"]["classifier.weights"]
    assert data_sha == __import__("hashlib").sha256((source.parent / "classifier.weights").read_bytes()).hexdigest()
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    shipped = (out / "model.onnx").read_bytes()
    assert external_tensors(shipped) == []
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    import onnxruntime as ort

    expected = ort.InferenceSession(_tiny_classifier().SerializeToString()).run(None, {"input": x})[0]
    got = ort.InferenceSession(shipped).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _hostile(tmp_path: Path, location: str, length: int | None = None) -> Path:
    """A model whose fc_w tensor points at `location` (written by hand, as an attacker would)."""
    model = _tiny_classifier()
    path = tmp_path / "model" / "m.onnx"
    _save_external(model, path)
    proto = onnx.load(str(path), load_external_data=False)
    for tensor in proto.graph.initializer:
        if tensor.name == "fc_w":
            entries = {e.key: e for e in tensor.external_data}
            entries["location"].value = location
            if length is not None:
                entries["length"].value = str(length)
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.parametrize(
    ("location", "needle"),
    [
        ("../secret.bin", "outside the model's folder"),
        ("sub/../../secret.bin", "outside the model's folder"),
        ("/etc/passwd", "an absolute path"),
        ("C:\\\\Windows\\\\win.ini", "an absolute path"),
        ("linked.bin", "symbolic link"),
        ("missing.bin", "does not exist beside it"),
        ("model.data", "bytes"),  # claims far more than the file has
    ],
)
def test_hostile_locations_exit_2_reading_nothing_outside(tmp_path: Path, location: str, needle: str) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 4096)
    path = _hostile(tmp_path, location, length=10**9 if location == "model.data" else None)
    (path.parent / "linked.bin").symlink_to(secret)
    out = tmp_path / "bundle"
    result = _compile(path, "--out", out, "--crop", "32", cwd=tmp_path)
    _one_error_line(result, needle)
    assert not out.exists() and not any(p.name.startswith(".bundle") for p in tmp_path.iterdir())
    assert path.exists() and (path.parent / "model.data").exists()  # the user's files are untouched


def test_a_bundle_whose_model_points_outside_is_refused_before_any_runtime(
    bundle: Path, image: Path, edgekit_cli, tmp_path: Path
) -> None:
    """Hash-matching but hostile: the manifest lists a model.onnx that keeps a tensor in ../weights.bin and
    in the working directory; predict and inspect refuse it, and no runtime gets to resolve the location."""
    import hashlib

    for location in ("weights.bin", "../weights.bin"):
        copy = tmp_path / f"bundle-{len(location)}"
        shutil.copytree(bundle, copy)
        proto = onnx.load(str(copy / "model.onnx"))
        onnx.save_model(proto, str(tmp_path / "scratch.onnx"), save_as_external_data=True, location="weights.bin")
        tampered = onnx.load(str(tmp_path / "scratch.onnx"), load_external_data=False)
        for tensor in external_data_helper._get_all_tensors(tampered):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        (copy / "model.onnx").write_bytes(tampered.SerializeToString())
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["files"]["model.onnx"] = hashlib.sha256((copy / "model.onnx").read_bytes()).hexdigest()
        (copy / "manifest.json").write_text(json.dumps(manifest))
        for command in (["predict", copy, image], ["inspect", copy]):
            result = edgekit_cli(*command, cwd=tmp_path)  # weights.bin sits in the working directory
            _one_error_line(result, "keeps the data of")


def test_a_model_file_built_in_memory_from_a_folder_reference_is_refused_by_model_files() -> None:
    from edgekit.backends.base import ModelFiles
    from edgekit.core.errors import BundleError

    model = _tiny_classifier()
    tensor = model.graph.initializer[0]
    external_data_helper.set_external_data(tensor, "weights.bin", offset=0, length=len(tensor.raw_data) or 864)
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("float_data")
    with pytest.raises(BundleError, match="keeps the data of 1 tensor"):
        ModelFiles("model.onnx", {"model.onnx": model.SerializeToString()})
    ModelFiles("model.onnx", {"model.onnx": _tiny_classifier().SerializeToString()})  # self-contained: fine
