"""A catalogue of tampered, swapped, oversized and malformed bundles, run as a user runs edgekit (a subprocess).

Each case changes a copy of a real bundle the way an attacker or a broken copy would, then runs
`edgekit predict` and `edgekit inspect` on it and asserts: exit 2, exactly one stderr line starting
`error:` with the expected reason, no traceback, and the bundle directory left as it was. Cases that
point outside the bundle put a *different valid model* there: had it been loaded, predict would have
succeeded, so a refusal proves nothing outside was used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edit(bundle: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _set(path: str, value: Any) -> Callable[[Path, Path], None]:
    """A case that sets one (dotted) manifest field."""

    def apply(bundle: Path, outside: Path) -> None:
        def change(manifest: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            node = manifest
            for key in parents:
                node = node[key]
            node[last] = value

        _edit(bundle, change)

    return apply


def _delete(key: str) -> Callable[[Path, Path], None]:
    return lambda bundle, outside: _edit(bundle, lambda m: m.pop(key))


def _raw(text: str | bytes) -> Callable[[Path, Path], None]:
    def apply(bundle: Path, outside: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (bundle / "manifest.json").write_bytes(data)

    return apply


def _flip_byte(bundle: Path, outside: Path) -> None:
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))


def _truncate(bundle: Path, outside: Path) -> None:
    data = (bundle / "model.onnx").read_bytes()
    (bundle / "model.onnx").write_bytes(data[: len(data) // 2])


def _outside_model(bundle: Path, outside: Path) -> str:
    """The bundle's own model copied outside: same bytes, so the hash would match if it were followed."""
    shutil.copyfile(bundle / "model.onnx", outside / "model.onnx")
    return str(outside / "model.onnx")


def _relative_escape(bundle: Path, outside: Path) -> None:
    _outside_model(bundle, outside)
    name = os.path.relpath(outside / "model.onnx", bundle)
    _edit(bundle, lambda m: (m.update(model_file=name), m["files"].update({name: m["files"]["model.onnx"]})))


def _absolute_escape(bundle: Path, outside: Path) -> None:
    name = _outside_model(bundle, outside)
    _edit(bundle, lambda m: (m.update(model_file=name), m["files"].update({name: m["files"]["model.onnx"]})))


def _symlinked_model(bundle: Path, outside: Path) -> None:
    target = _outside_model(bundle, outside)
    (bundle / "model.onnx").unlink()
    (bundle / "model.onnx").symlink_to(target)


def _symlinked_directory(bundle: Path, outside: Path) -> None:
    _outside_model(bundle, outside)
    (bundle / "sub").symlink_to(outside, target_is_directory=True)
    _edit(
        bundle,
        lambda m: (
            m.update(model_file="sub/model.onnx"),
            m["files"].update({"sub/model.onnx": m["files"]["model.onnx"]}),
        ),
    )


def _symlinked_manifest(bundle: Path, outside: Path) -> None:
    shutil.copyfile(bundle / "manifest.json", outside / "manifest.json")
    (bundle / "manifest.json").unlink()
    (bundle / "manifest.json").symlink_to(outside / "manifest.json")


def _fifo_model(bundle: Path, outside: Path) -> None:
    (bundle / "model.onnx").unlink()
    os.mkfifo(bundle / "model.onnx")  # a blocking open would hang the test: the loader must not block


def _directory_model(bundle: Path, outside: Path) -> None:
    (bundle / "model.onnx").unlink()
    (bundle / "model.onnx").mkdir()


def _unlisted_model_file(bundle: Path, outside: Path) -> None:
    shutil.copyfile(bundle / "model.onnx", bundle / "other.onnx")
    _edit(bundle, lambda m: m.update(model_file="other.onnx"))


def _corrupt_with_matching_hash(bundle: Path, outside: Path) -> None:
    (bundle / "model.onnx").write_bytes(b"\x08\x07garbage that is not a protobuf" * 100)
    _edit(bundle, lambda m: m["files"].update({"model.onnx": _sha(bundle / "model.onnx")}))


def _model_for_another_input(bundle: Path, outside: Path) -> None:
    """A valid ONNX model that takes 32×32 images, with its hash written into the manifest."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["y"])],
        "other",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, bundle / "model.onnx")
    _edit(bundle, lambda m: m["files"].update({"model.onnx": _sha(bundle / "model.onnx")}))


def _wrong_class_count(bundle: Path, outside: Path) -> None:
    # Consistent with model.num_classes, so only the model's real output width can catch it.
    _edit(bundle, lambda m: (m.update(classes=[*m["classes"], "extra"]), m["model"].update(num_classes=8)))


def _deep_nesting(bundle: Path, outside: Path) -> None:
    (bundle / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)


def _huge_manifest(bundle: Path, outside: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["padding"] = "x" * (50 << 20)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _long_number(bundle: Path, outside: Path) -> None:
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text.replace('"schema_version": 1', '"schema_version": ' + "9" * 5000))


def _nan(bundle: Path, outside: Path) -> None:
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text.replace('"threads": 0', '"threads": NaN'))


def _delete_model(bundle: Path, outside: Path) -> None:
    (bundle / "model.onnx").unlink()


def _delete_manifest(bundle: Path, outside: Path) -> None:
    (bundle / "manifest.json").unlink()


# (id, change, expected text in the one error line)
CASES: list[tuple[str, Callable[[Path, Path], Any], str]] = [
    ("model_byte_flipped", _flip_byte, "does not match the sha256"),
    ("model_truncated", _truncate, "does not match the sha256"),
    ("model_deleted", _delete_model, "is missing model.onnx"),
    ("manifest_deleted", _delete_manifest, "not an edgekit bundle"),
    ("manifest_not_json", _raw("{not json"), "not JSON"),
    ("manifest_empty", _raw(""), "not JSON"),
    ("manifest_binary", _raw(b"\xff\xfe\x00garbage"), "not UTF-8"),
    ("manifest_a_list", _raw("[1, 2, 3]"), "top level must be a JSON object"),
    ("manifest_deeply_nested", _deep_nesting, "nests deeper than"),
    ("manifest_50_mb", _huge_manifest, "larger than"),
    ("number_of_5000_digits", _long_number, "a number of 5000 characters"),
    ("nan_number", _nan, "NaN is not a JSON number"),
    ("schema_from_the_future", _set("schema_version", 99), "schema 99"),
    ("schema_version_a_string", _set("schema_version", "1"), "schema_version must be int"),
    ("classes_missing", _delete("classes"), "classes is missing"),
    ("classes_a_string", _set("classes", "coat,dress"), "classes must be list"),
    ("classes_not_strings", _set("classes", [1, 2, 3, 4, 5, 6, 7]), "classes must be a list of"),
    ("classes_vs_num_classes", _set("classes", ["a", "b"]), "has 2 names but the model has 7 outputs"),
    ("classes_vs_model_outputs", _wrong_class_count, "names 8 classes but the model has 7 outputs"),
    ("threads_2_to_the_40", _set("target.threads", 2**40), "target.threads must be within 0..4096"),
    ("threads_negative", _set("target.threads", -1), "target.threads must be within"),
    ("threads_a_bool", _set("target.threads", True), "target.threads must be int"),
    ("target_missing", _delete("target"), "target is missing"),
    ("precision_unknown", _set("precision", "int4"), "precision must be one of"),
    ("output_kind_unknown", _set("output.kind", "embeddings"), "output.kind must be one of"),
    ("input_shape_wrong", _set("input.shape", [None, 3, 64]), "input.shape must be"),
    ("input_shape_vs_crop", _set("input.shape", [None, 3, 96, 96]), "the preprocessing crop"),
    ("preprocessing_crop_zero", _set("preprocessing.crop", 0), "preprocessing is invalid"),
    ("preprocessing_unknown_key", _set("preprocessing.gamma", 2.2), "preprocessing is invalid"),
    ("source_missing", _delete("source"), "source must be an object"),
    ("files_empty", _set("files", {}), "files must list"),
    ("files_hash_not_hex", _set("files", {"model.onnx": "z" * 64}), "must be a sha256"),
    ("model_file_not_listed", _unlisted_model_file, "'other.onnx' is not listed in files"),
    ("model_file_relative_escape", _relative_escape, "not a plain relative path inside the bundle"),
    ("model_file_absolute", _absolute_escape, "not a plain relative path inside the bundle"),
    ("model_file_names_manifest", _set("model_file", "manifest.json"), "model_file cannot name manifest.json"),
    ("model_symlinked_outside", _symlinked_model, "symbolic link"),
    ("directory_symlinked_outside", _symlinked_directory, "symbolic link"),
    ("manifest_symlinked_outside", _symlinked_manifest, "symbolic link"),
    ("model_is_a_fifo", _fifo_model, "not a regular file"),
    ("model_is_a_directory", _directory_model, "not a regular file"),
    ("corrupt_model_hash_matches", _corrupt_with_matching_hash, "onnxruntime cannot load model.onnx"),
    ("model_for_another_input", _model_for_another_input, "does not take the input its manifest describes"),
    ("backend_unknown", _set("backend", "tvm"), "backend 'tvm' is not one this edgekit runs"),
]


# What only loading the model can find (inspect reads the manifest and checks hashes; it loads no runtime).
FOUND_BY_LOADING = {"classes_vs_model_outputs", "corrupt_model_hash_matches", "model_for_another_input"}


def _snapshot(directory: Path) -> dict[str, tuple[int, str]]:
    """Every entry's mode and content (or link target), to prove a failed command changed nothing."""
    state = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            state[str(path)] = (0, os.readlink(path))
        elif path.is_file():
            state[str(path)] = (path.stat().st_mode, _sha(path))
        else:
            state[str(path)] = (path.stat().st_mode, "")
    return state


@pytest.mark.parametrize(("case", "change", "needle"), CASES, ids=[c[0] for c in CASES])
def test_hostile_bundle_is_refused_with_one_line(
    case: str, change: Callable[[Path, Path], Any], needle: str, bundle: Path, image: Path, edgekit_cli, tmp_path: Path
) -> None:
    copy, outside = tmp_path / "bundle", tmp_path / "outside"
    shutil.copytree(bundle, copy)
    outside.mkdir()
    change(copy, outside)
    before = _snapshot(tmp_path)
    commands = [["predict", copy, image]] + ([] if case in FOUND_BY_LOADING else [["inspect", copy]])
    for command in commands:
        result = edgekit_cli(*command)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (command, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert needle in lines[0], lines[0]
        assert "Traceback" not in result.stderr
    assert _snapshot(tmp_path) == before


def test_an_unlisted_file_is_never_loaded_and_inspect_names_it(
    bundle: Path, image: Path, edgekit_cli, tmp_path: Path
) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "kernels").mkdir()
    (copy / "kernels" / "preprocess-sm_87.cubin").write_bytes(b"planted")
    result = edgekit_cli("inspect", copy)
    assert result.returncode == 0, result.stderr
    assert "1 file(s), never loaded: kernels/preprocess-sm_87.cubin" in result.stdout
    assert edgekit_cli("predict", copy, image).returncode == 0
