"""Crash isolation (issue 31): a model file is parsed in a child process first, so a runtime that dies in its
native parser takes the child with it, not the caller.

No model file that really crashes a runtime's parser was found: 120 random byte mutations of a .tflite and 15
hostile shape edits were all refused by LiteRT 2.3 with Python exceptions (its flatbuffer verifier), and ONNX
Runtime and OpenVINO raise on the malformed files of tests/test_hostile_bundles.py. So the crash itself comes
from ctypes (a real SIGSEGV in native code) in a child, and the load path is shown to go through the child.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgekit.core.errors import BundleError
from edgekit.runtime import isolate


@pytest.fixture
def isolating(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv(isolate.ISOLATE_ENV, "1")  # conftest turns it off for the rest of the suite
    return {**os.environ, isolate.ISOLATE_ENV: "1"}


def test_a_native_crash_in_the_child_is_an_error_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    crasher = tmp_path / "crashing_parser.py"
    crasher.write_text("import ctypes\nctypes.string_at(0)  # a read of address 0 in native code: SIGSEGV\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with pytest.raises(BundleError, match=r"model\.tflite crashed the runtime that parsed it \(SIGSEGV"):
        isolate.run_in_child("crashing_parser", [], "bundle/model.tflite")


def test_the_child_s_own_error_and_bugs_reach_the_caller(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "refusing.py").write_text("import sys\nprint('error: bad file', file=sys.stderr)\nsys.exit(2)\n")
    (tmp_path / "buggy.py").write_text("raise ZeroDivisionError('a bug')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    from edgekit.core.errors import EdgekitError

    with pytest.raises(EdgekitError, match=r"^bad file$"):
        isolate.run_in_child("refusing", [], "x")
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):  # a bug stays a bug (exit 1 with its traceback)
        isolate.run_in_child("buggy", [], "x")


def test_loading_a_bundle_parses_it_in_a_child_first(bundle: Path, isolating: dict, tmp_path: Path) -> None:
    """The model file the runtime refuses is refused by the child (whose error the caller gets), and a Python
    caller survives a child that dies: shown by making the runtime's load kill its process."""
    import edgekit

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "model.onnx").write_bytes(b"\x08\x07garbage that is not a protobuf" * 100)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = hashlib.sha256((copy / "model.onnx").read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"cannot load model\.onnx"):
        edgekit.load(copy)

    # A runtime that dies while parsing: ONNX Runtime's session, replaced in the child only by a sitecustomize
    # that aborts (SIGABRT) when a session is created: the caller gets an error, not a dead process.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import os
        if os.environ.get("EDGEKIT_ISOLATE_PARSING") == "0":  # only in the child
            import onnxruntime
            class Dying:
                def __init__(self, *args, **kwargs):
                    os.abort()
            onnxruntime.InferenceSession = Dying
    """)
    )
    script = textwrap.dedent(f"""
        import edgekit
        from edgekit.core.errors import BundleError
        try:
            edgekit.load({str(bundle)!r})
        except BundleError as exc:
            print("caller survived:", exc)
    """)
    env = {**isolating, "PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "caller survived:" in result.stdout and "crashed the runtime that parsed it (SIGABRT" in result.stdout


def test_inspect_parses_a_model_file_in_a_child(edgekit_cli, isolating: dict, tmp_path: Path) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"\x08\x07not a model")
    result = edgekit_cli("inspect", broken, env=isolating)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "is not a readable ONNX model" in lines[0], result.stderr
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import os
        if os.environ.get("EDGEKIT_ISOLATE_PARSING") == "0":
            import onnx
            onnx.load = lambda *args, **kwargs: os.abort()
    """)
    )
    env = {**isolating, "PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = edgekit_cli("inspect", broken, env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "model.onnx crashed the runtime" in lines[0] and "SIGABRT" in lines[0]
