"""Targets as data and validation before slow work: unknown keys, backend choice, parity refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.backends import REGISTRY, OnnxRuntimeBackend, OpenVinoBackend
from edgekit.compile import compile_bundle
from edgekit.config import CompileConfig, choose_backend
from edgekit.errors import EdgekitError, ParityError
from edgekit.targets import get_target, host_target_name, list_targets

X86 = """
name = "{name}"
description = "test"
kind = "cpu"
arch = "x86_64"
threads = 1
onnx_opset = 13
batch = {{ min = 1, opt = 1, max = 4 }}
backends = {{ fp32 = ["onnxruntime"] }}
"""


def test_shipped_targets_load() -> None:
    targets = {t.name: t for t in list_targets()}
    assert targets["x86-cpu"].backends["fp32"] == ("onnxruntime", "openvino")
    assert targets["x86-cpu"].backends["int8"] == ("openvino", "onnxruntime")
    assert targets["x86-cpu"].precisions == ("fp32", "int8", "fp16")
    assert targets["arm-cpu"].arch == "aarch64" and targets["arm-cpu"].threads == 4
    assert host_target_name() in targets


def test_user_target_file_and_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "my-box.toml"
    good.write_text(X86.format(name="my-box"))
    assert get_target(str(good)).backends == {"fp32": ("onnxruntime",)}
    bad = tmp_path / "typo.toml"
    bad.write_text("thraeds = 4\n" + X86.format(name="typo"))
    with pytest.raises(EdgekitError, match=r"unknown key.*thraeds"):
        get_target(str(bad))
    wrong_batch = tmp_path / "wb.toml"
    wrong_batch.write_text(X86.format(name="wb").replace("max = 4", "max = 0"))
    with pytest.raises(EdgekitError, match="batch"):
        get_target(str(wrong_batch))
    with pytest.raises(EdgekitError, match="unknown target 'nope'"):
        get_target("nope")


def test_backend_choice_follows_target_and_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    x86 = get_target("x86-cpu")
    assert choose_backend(x86, "fp32", None) is OnnxRuntimeBackend
    assert choose_backend(x86, "fp32", "openvino") is OpenVinoBackend
    monkeypatch.setattr(
        OnnxRuntimeBackend, "unavailable_reason", classmethod(lambda cls: "onnxruntime is not installed")
    )
    assert choose_backend(x86, "fp32", None) is OpenVinoBackend
    with pytest.raises(EdgekitError, match="onnxruntime is not installed"):
        choose_backend(x86, "fp32", "onnxruntime")
    with pytest.raises(EdgekitError, match="unknown backend 'tensorrt'"):
        choose_backend(x86, "fp32", "tensorrt")
    assert choose_backend(x86, "int8", None) is OpenVinoBackend
    with pytest.raises(EdgekitError, match="supports fp32, int8"):
        choose_backend(get_target("arm-cpu"), "fp16", None)
    assert set(REGISTRY) == {"onnxruntime", "openvino"}


def test_parity_failure_writes_nothing(trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend that computes something else must not produce a bundle."""
    original = OnnxRuntimeBackend.run

    def wrong(self: OnnxRuntimeBackend, batch: np.ndarray) -> np.ndarray:
        out = original(self, batch)
        return out[:, ::-1].copy()  # classes permuted: a plausible export bug

    monkeypatch.setattr(OnnxRuntimeBackend, "run", wrong)
    out = tmp_path / "bundle"
    config = CompileConfig(model=trained["path"], target=get_target("x86-cpu"), out=out, backend="onnxruntime")
    with pytest.raises(ParityError, match="does not reproduce the pytorch model"):
        compile_bundle(config)
    assert not out.exists() and list(tmp_path.iterdir()) == []
