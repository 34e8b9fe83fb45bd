"""Targets as data and validation before slow work: unknown keys, backend choice, parity refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.backends.converters import choose_converter
from edgekit.backends.onnxruntime.run import OnnxRuntimeBackend
from edgekit.backends.openvino.run import OpenVinoBackend
from edgekit.backends.registry import RUNTIMES
from edgekit.core.errors import EdgekitError, ParityError
from edgekit.measure.host import host_target_name
from edgekit.pipeline.compile import compile_bundle
from edgekit.pipeline.compile_config import CompileConfig
from edgekit.targets import get_target, list_targets

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
    assert choose_converter(x86, "fp32", None).backend is OnnxRuntimeBackend
    assert choose_converter(x86, "fp32", "openvino").backend is OpenVinoBackend
    monkeypatch.setattr(
        OnnxRuntimeBackend, "unavailable_reason", classmethod(lambda cls: "onnxruntime is not installed")
    )
    assert choose_converter(x86, "fp32", None).backend is OpenVinoBackend
    with pytest.raises(EdgekitError, match="onnxruntime is not installed"):
        choose_converter(x86, "fp32", "onnxruntime")
    with pytest.raises(EdgekitError, match="tensorrt does not run on cpu targets"):
        choose_converter(x86, "fp32", "tensorrt")
    with pytest.raises(EdgekitError, match="unknown backend 'tensorrtt'"):
        choose_converter(x86, "fp32", "tensorrtt")
    assert choose_converter(x86, "int8", None).backend is OpenVinoBackend
    with pytest.raises(EdgekitError, match="supports fp32, int8"):
        choose_converter(get_target("arm-cpu"), "fp16", None)
    assert set(RUNTIMES) == {"onnxruntime", "openvino", "tensorrt", "litert"}


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


GPU = """
name = "{name}"
description = "test GPU"
kind = "gpu"
arch = "aarch64"
threads = 0
onnx_opset = 17
batch = {{ min = 1, opt = 1, max = 8 }}
backends = {{ fp16 = ["tensorrt"] }}

[gpu]
compute_capability = "8.7"
dla_cores = 0
memory_mb = 8192
tensorrt = {{ min = "10.3", max = "11" }}
cuda = {{ min = "11.4" }}
"""


def test_gpu_targets_record_what_the_device_is() -> None:
    targets = {t.name: t for t in list_targets()}
    expected = {  # name: (sm, DLA cores, a TensorRT it can have, one it cannot, precisions)
        "jetson-nano": (53, 0, "8.2.1", "8.5.2", ("fp16", "fp32")),
        "jetson-xavier-nx": (72, 2, "8.5.2", "10.3.0", ("int8", "fp16", "fp32")),
        "jetson-agx-xavier": (72, 2, "8.5.2", "8.6.1", ("int8", "fp16", "fp32")),
        "jetson-orin-nano": (87, 0, "10.3.0", "8.6.1", ("int8", "fp16", "fp32")),
        "jetson-orin-nx": (87, 2, "11.4.1", "12.0", ("int8", "fp16", "fp32")),
        "jetson-agx-orin": (87, 2, "10.3.0", "8.5.2", ("int8", "fp16", "fp32")),
        "jetson-thor": (110, 0, "11.4.1", "11.3.0", ("int8", "fp16", "fp32")),
        "rtx-30": (86, 0, "10.16.0", "8.5.2", ("int8", "fp16", "fp32")),
        "rtx-40": (89, 0, "11.1.0", "8.5.2", ("int8", "fp16", "fp32")),
        "rtx-50": (120, 0, "10.8.0", "10.3.0", ("int8", "fp16", "fp32")),
        "datacenter-hopper": (90, 0, "8.6.1", "12.0", ("int8", "fp16", "fp32")),
    }
    for name, (sm, dla, has, lacks, precisions) in expected.items():
        gpu = targets[name].gpu
        assert gpu is not None and targets[name].kind == "gpu"
        assert (gpu.sm, gpu.dla_cores, gpu.tensorrt.admits(has), gpu.tensorrt.admits(lacks)) == (sm, dla, True, False)
        assert targets[name].precisions == precisions and targets[name].backends["fp16"] == ("tensorrt",)
        assert gpu.sparse_tensor_cores == (sm >= 80)
    # CUDA 13 (this machine's nvcc) can no longer target the Nano's and Xavier's GPUs; it can target Orin's.
    assert not targets["jetson-nano"].gpu.cuda.admits("13.0") and not targets["jetson-xavier-nx"].gpu.cuda.admits(
        "13.0"
    )
    assert targets["jetson-orin-nano"].gpu.cuda.admits("13.0") and targets["jetson-nano"].gpu.cuda.admits("10.2")
    assert targets["x86-cpu"].gpu is None and "gpu" not in targets["x86-cpu"].to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda text: text.replace("dla_cores = 0", "dla_cores = 0\nsm = 87"), r"\[gpu\]: unknown key\(s\) sm"),
        (lambda text: text.replace('"8.7"', '"sm_87"'), "compute_capability must look like"),
        (lambda text: text.split("[gpu]")[0], "a \\[gpu\\] table is required"),
        (lambda text: text.replace('min = "10.3"', 'min = "ten"'), "not a version"),
        (lambda text: text.replace('kind = "gpu"', 'kind = "cpu"'), "only allowed there"),
    ],
)
def test_bad_gpu_target_files(tmp_path: Path, run_cli, change, message: str) -> None:
    good = tmp_path / "box.toml"
    good.write_text(GPU.format(name="box"))
    assert get_target(str(good)).gpu.sm == 87
    bad = tmp_path / "bad.toml"
    bad.write_text(change(GPU.format(name="bad")))
    with pytest.raises(EdgekitError, match=message):
        get_target(str(bad))
    status, _, stderr = run_cli("compile", bad, "--target", bad, "--out", tmp_path / "out")
    assert status == 2 and stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1


def test_targets_json_lists_gpu_facts(run_cli) -> None:
    import json

    status, stdout, _ = run_cli("targets", "--json")
    rows = {row["name"]: row for row in json.loads(stdout)["targets"]}
    orin = rows["jetson-orin-nx"]
    assert status == 0 and orin["gpu"]["sm"] == 87 and orin["gpu"]["dla_cores"] == 2
    assert orin["gpu"]["tensorrt"] == {"min": "10.3", "max": "11"} and orin["gpu"]["workspace_mb"] == 4096
    status, _, stderr = run_cli("compile", "x.pt", "--target", "jetson-orin-nanoo")
    assert status == 2 and "unknown target 'jetson-orin-nanoo'" in stderr
