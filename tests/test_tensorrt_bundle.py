"""Portable TensorRT bundles compiled on this CPU machine, and `edgekit build` against a fake TensorRT.

The fake (`fake_tensorrt`) has exactly the API of a real TensorRT release, so the build code path
runs end to end here; the GPU is faked as a `CudaDevice`. What only real TensorRT can show (engine
speed, numerical parity of an engine) is left to the device.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

import edgekit
from edgekit.backends.qdq_rules import check_file
from edgekit.backends.tensorrt import device
from edgekit.backends.tensorrt.device import CudaDevice
from edgekit.backends.tensorrt.run import TensorRTBackend
from edgekit.core.errors import EdgekitError
from edgekit.pipeline.device_build import DeviceBuildConfig, build_on_device
from edgekit.runtime.bundle import read_manifest
from tests.conftest import json_records
from tests.fake_tensorrt import FakeTensorRT

ORIN = CudaDevice(name="Orin", compute_capability="8.7", driver_version="12.6", memory_mb=15600)


def test_jetson_bundle_is_complete_and_portable(orin_int8: dict) -> None:
    bundle, manifest = orin_int8["path"], orin_int8["manifest"]
    assert manifest["backend"] == "tensorrt" and manifest["target"]["gpu"]["compute_capability"] == "8.7"
    # Q/DQ as TensorRT's parser wants it, on every layer (the fixture's guard is off: nothing was kept in float)
    assert manifest["quantization"]["keep_fp32"] == [] and check_file(bundle / "model.onnx") == []
    model = onnx.load(str(bundle / "model.onnx"))
    assert {n.op_type for n in model.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    assert manifest["tensorrt"] == {"options": manifest["tensorrt"]["options"], "engines": []}
    kernels = manifest["kernels"]
    assert (bundle / kernels["source"]).is_file() and kernels["sm"] == 87
    if shutil.which("nvcc"):
        cubin = (bundle / kernels["cubin"]).read_bytes()
        assert cubin[:4] == b"\x7fELF"  # a real cubin for sm_87, made by this machine's nvcc
    assert manifest["parity"]["runtime"].startswith("onnxruntime")
    # The TensorRT-placement INT8 file (signed symmetric Q/DQ) run by ONNX Runtime: as close to FP32 as the CPU
    # placement's build, and no top-1 lost beyond a few images.
    models = manifest["accuracy"]["models"]
    assert manifest["parity"]["top1_agreement"] >= 0.93
    assert models["bundle"]["top1"] >= models["reference"]["top1"] - 0.05
    read_manifest(bundle, verify=True)  # every file, kernels included, is hashed


def test_compile_says_in_one_line_where_the_engine_is_built(
    trained: dict, data_dirs: dict, run_cli, tmp_path: Path
) -> None:
    out = tmp_path / "orin-fp16"
    status, stdout, stderr = run_cli(
        "compile", trained["path"], "--target", "jetson-orin-nano", "--precision", "fp16", "--out", out
    )
    assert status == 0, stderr
    notes = [line for line in stderr.splitlines() if "edgekit build" in line]
    assert notes == [f"note: no TensorRT engine was built here (TensorRT is not installed on this machine); "
                     f"the bundle is portable: build the engine on the device with `edgekit build {out}`"]  # fmt: skip
    assert "TensorRT engines: none yet: run `edgekit build" in stdout


def test_build_without_tensorrt_and_predict_without_engine(orin_int8: dict, data_dirs: dict, run_cli) -> None:
    bundle = orin_int8["path"]
    status, _, stderr = run_cli("build", bundle)
    assert status == 2 and stderr.startswith("error: cannot build") and "TensorRT is not installed" in stderr
    assert len(stderr.strip().splitlines()) == 1
    image = next((data_dirs["val"]).rglob("*.png"))
    status, _, stderr = run_cli("predict", bundle, image)
    assert status == 2 and "tensorrt is not installed" in stderr and "--backend onnxruntime" in stderr
    # The ONNX file TensorRT builds from was checked with ONNX Runtime at compile time, so it runs there too.
    status, stdout, stderr = run_cli("predict", bundle, image, "--backend", "onnxruntime", "--json")
    assert status == 0, stderr
    (prediction,) = json_records(stdout, "prediction")
    assert prediction["file"] == str(image) and prediction["label"] in orin_int8["manifest"]["classes"]


def test_tensorrt_options_are_checked_before_slow_work(trained: dict, run_cli, tmp_path: Path) -> None:
    for args, message in [
        (["--target", "jetson-orin-nano", "--precision", "int8", "--dla-core", "0"], "no DLA cores"),
        (["--target", "jetson-orin-nx", "--precision", "fp32", "--dla-core", "0"], "FP16 and INT8 only"),
        (["--target", "jetson-nano", "--precision", "int8"], "does not support precision int8"),
        (["--target", "x86-cpu", "--opt-level", "3"], "do not apply to backend"),
    ]:
        out = tmp_path / "never"
        status, _, stderr = run_cli("compile", trained["path"], *args, "--calib", tmp_path, "--out", out)
        assert status == 2 and message in stderr, stderr
        assert not out.exists()


@pytest.fixture()
def fake_trt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """TensorRT 10.3 (JetPack 6) and an Orin GPU, as far as edgekit can tell."""

    def install(version: str = "10.3.0", gpu: CudaDevice | None = ORIN) -> FakeTensorRT:
        fake = FakeTensorRT(version)
        monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake)
        monkeypatch.setattr(TensorRTBackend, "unavailable_reason", classmethod(lambda cls: None))
        monkeypatch.setattr(device, "probe", lambda ordinal=0: gpu)
        monkeypatch.setattr("edgekit.backends.tensorrt.bundle_engines.probe", lambda ordinal=0: gpu)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        # Running the engine needs a real GPU; the check's verdict is what these tests follow.
        monkeypatch.setattr("edgekit.pipeline.device_build.check_device_model", lambda *args: dict(parity))
        return fake

    parity: dict = {"checked": False, "why": "no GPU in this test"}
    install.parity = parity  # type: ignore[attr-defined]

    return install


def test_build_adds_a_recorded_engine_and_reuses_the_timing_cache(orin_int8: dict, fake_trt, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(orin_int8["path"], bundle)
    fake = fake_trt("10.3.0")
    record = build_on_device(DeviceBuildConfig(bundle))
    manifest = read_manifest(bundle, verify=True).to_dict()  # the engine is hashed like every other file
    assert manifest["tensorrt"]["engines"] == [record]
    assert (bundle / record["file"]).read_bytes() == b"fake-plan-10.3.0"
    assert record["tensorrt_version"] == "10.3.0" and record["device"]["name"] == "Orin"
    assert record["plan"]["network_flags"] == ["STRONGLY_TYPED"] and record["placement"]["device"] == "GPU"
    calls = {(cls, name) for cls, name, _ in fake.calls}
    assert ("IBuilderConfig", "set_memory_pool_limit") in calls and ("IOptimizationProfile", "set_shape") in calls
    assert ("IBuilderConfig", "set_flag") not in calls  # strongly typed: no precision flags on TensorRT 10
    cache_files = list((tmp_path / "cache" / "edgekit" / "tensorrt").iterdir())
    assert [f.read_bytes() for f in cache_files] == [b"timing-cache"] and "sm87" in cache_files[0].name
    fake.calls.clear()
    build_on_device(DeviceBuildConfig(bundle))  # same options: replaces its engine, reads the cache
    created = [args for cls, name, args in fake.calls if name == "create_timing_cache"]
    assert created == [(b"timing-cache",)]
    assert len(read_manifest(bundle).section("tensorrt")["engines"]) == 1


def test_engine_from_another_tensorrt_is_refused_with_the_rebuild_command(
    orin_int8: dict, fake_trt, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(orin_int8["path"], bundle)
    fake_trt("10.3.0")
    build_on_device(DeviceBuildConfig(bundle))
    fake_trt("11.1.0")  # JetPack 7 on the same Orin
    with pytest.raises(
        EdgekitError, match=rf"built for TensorRT 10.3.0, this machine has 11.1.0.*`edgekit build {bundle}`"
    ):
        edgekit.load(bundle)
    record = build_on_device(DeviceBuildConfig(bundle))
    assert record["plan"]["network_flags"] == [] and len(read_manifest(bundle).section("tensorrt")["engines"]) == 2


def test_dla_build_reports_gpu_fallback(orin_int8: dict, fake_trt, tmp_path: Path, capsys) -> None:
    from edgekit.core.progress import Progress

    bundle = tmp_path / "bundle"
    shutil.copytree(orin_int8["path"], bundle)
    fake = fake_trt("10.3.0")
    fake.behaviour[("IBuilderConfig", "can_run_on_DLA")] = lambda layer: False  # e.g. an op DLA lacks
    record = build_on_device(
        DeviceBuildConfig(bundle, options={"dla_core": 1, "gpu_fallback": True}), Progress(enabled=True)
    )
    placement = record["placement"]
    assert placement["device"] == "DLA" and placement["dla_core"] == 1 and placement["gpu_fallback"]
    assert placement["network_layers_on_gpu"] == ["conv1", "conv1"] and placement["dla_subgraphs"] == 1
    assert "run on the GPU, not DLA core 1" in capsys.readouterr().err
    flags = [repr(args[0]) for cls, name, args in fake.calls if name == "set_flag"]
    assert flags == ["BuilderFlag.GPU_FALLBACK"]
    set_values = {name: args[0] for cls, name, args in fake.calls if name.endswith("=")}
    assert repr(set_values["default_device_type="]) == "DeviceType.DLA" and set_values["DLA_core="] == 1
    # The engine's parity is faked (no GPU here): what is tested is the warning edgekit derives from it.
    fake_trt.parity.update(checked=True, top1_agreement=0.9, max_abs_diff=0.4, images=32, inputs="synthetic")
    build_on_device(DeviceBuildConfig(bundle, options={"dla_core": 1, "gpu_fallback": True}), Progress(enabled=True))
    assert "the engine agrees with ONNX Runtime on only 90.0% of 32 inputs" in capsys.readouterr().err
    fake_trt.parity.update(top1_agreement=1.0, max_abs_diff=0.01)
    build_on_device(DeviceBuildConfig(bundle, options={"dla_core": 1, "gpu_fallback": True}), Progress(enabled=True))
    assert "agrees with ONNX Runtime on only" not in capsys.readouterr().err


def test_build_on_the_wrong_gpu_is_refused(orin_int8: dict, fake_trt, tmp_path: Path) -> None:
    fake_trt("10.3.0", CudaDevice("NVIDIA H200", "9.0", "13.0", 143000))
    with pytest.raises(EdgekitError, match=r"this GPU is NVIDIA H200 \(sm_90\), the target jetson-orin-nx is sm_87"):
        build_on_device(DeviceBuildConfig(orin_int8["path"]))
    assert np.array_equal(read_manifest(orin_int8["path"]).section("tensorrt")["engines"], [])  # bundle untouched


def test_precision_auto_for_a_gpu_not_here_ranks_by_the_target_file(
    trained: dict, data_dirs: dict, run_cli, tmp_path: Path
) -> None:
    out = tmp_path / "auto"
    status, _, stderr = run_cli(
        "compile", trained["path"], "--target", "jetson-orin-nano", "--precision", "auto", "--max-accuracy-drop", "100",
        "--min-agreement", "0", "--calib", data_dirs["train"], "--calib-size", "32", "--val", data_dirs["val"],
        "--out", out,
    )  # fmt: skip
    assert status == 0, stderr
    manifest = read_manifest(out, verify=True).to_dict()  # kernels/ came along with the chosen variant
    record = manifest["precision_auto"]
    assert record["ranked_by"].startswith("target file order (TensorRT is not installed")
    assert [c["precision"] for c in record["candidates"]] == ["int8", "fp16", "fp32"]
    assert all(c["p50_ms"] is None for c in record["candidates"])  # nothing was timed on the wrong machine
    assert manifest["precision"] == "int8" and (out / manifest["kernels"]["source"]).is_file()


def test_build_drops_a_stale_signature_and_signs_again_with_key(
    orin_int8: dict, fake_trt, run_cli, tmp_path: Path
) -> None:
    """Building adds the engine, so the signature made before no longer covers the bundle: it is dropped with a
    note, and `--key` signs the built bundle (engine included) in the same step."""
    bundle = tmp_path / "bundle"
    shutil.copytree(orin_int8["path"], bundle)
    key = tmp_path / "ci"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    fake_trt("10.3.0")
    assert run_cli("sign", bundle, "--key", key)[0] == 0
    status, _, stderr = run_cli("build", bundle)
    assert status == 0, stderr
    assert "signature was dropped" in stderr and not (bundle / "signature.json").exists()
    assert run_cli("sign", bundle, "--key", key)[0] == 0
    status, stdout, stderr = run_cli("build", bundle, "--key", key, "--json")
    assert status == 0, stderr
    (record,) = json_records(stdout)
    assert record["signature"]["keyid"].startswith("SHA256:")
    status, _, stderr = run_cli("verify", bundle, "--key", key.with_suffix(".pub"))
    assert status == 0, stderr
    statement = json.loads(base64.b64decode(json.loads((bundle / "signature.json").read_text())["payload"]))
    assert any(name.endswith(".plan") for name in statement["predicate"]["files"])  # the engine is covered
