"""TensorRT backend on a CPU: build decisions, API conformance, engine records, portable bundles.

TensorRT cannot be installed here, so the engine build runs against `fake_tensorrt`, a module made
from TensorRT's published Python API (any symbol a real release lacks raises AttributeError).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgekit.backends.tensorrt import api_check
from edgekit.backends.tensorrt.api_check import check_backend, check_source, published_api
from edgekit.backends.tensorrt.device import CudaDevice
from edgekit.backends.tensorrt.engine_records import rebuild_command, select_engine
from edgekit.backends.tensorrt.recipe import BuildOptions, BuildPlan, plan_build
from edgekit.core.errors import EdgekitError
from edgekit.targets import get_target, version_tuple

VERSIONS = tuple(published_api())  # real releases: 8.6.1, 10.3.0, 10.x, 11.x
ORIN = CudaDevice(name="Orin", compute_capability="8.7", driver_version="12.6", memory_mb=15600)
H200 = CudaDevice(name="NVIDIA H200", compute_capability="9.0", driver_version="13.0", memory_mb=143000)
INPUT = ("input", [None, 3, 224, 224])


def plan(target: str, precision: str, version: str, pruned_2_4: bool = False, **options: object) -> BuildPlan:
    return plan_build(get_target(target), precision, BuildOptions(**options), version, *INPUT, sparse_bundle=pruned_2_4)


def test_versions_cover_what_the_issue_names() -> None:
    majors = {version_tuple(v)[0] for v in VERSIONS}
    assert {10, 11} <= majors and "10.3.0" in VERSIONS


def test_precision_comes_from_the_file_on_10_and_11_and_from_flags_before() -> None:
    p10 = plan("jetson-orin-nano", "int8", "10.3.0")
    assert p10.network_flags == ("STRONGLY_TYPED",) and "INT8" not in p10.builder_flags
    p11 = plan("jetson-orin-nano", "int8", "11.4.1")
    assert p11.network_flags == () and p11.builder_flags == ()  # strongly typed always; no precision flags exist
    p86 = plan("rtx-40", "fp16", "8.6.1")
    assert p86.network_flags == ("EXPLICIT_BATCH",) and p86.builder_flags == ("FP16",)
    assert plan("rtx-40", "int8", "8.6.1").builder_flags == ("INT8",)


def test_profile_workspace_and_fixed_batch() -> None:
    p = plan("jetson-orin-nano", "fp16", "10.3.0")
    assert p.profile == {"min": (1, 3, 224, 224), "opt": (1, 3, 224, 224), "max": (8, 3, 224, 224)}
    assert p.workspace_bytes == 2048 << 20  # a quarter of the module's 8 GB
    assert plan("datacenter-hopper", "fp16", "10.3.0").workspace_bytes == 4096 << 20  # capped
    fixed = plan_build(get_target("rtx-40"), "fp16", BuildOptions(), "10.3.0", "x", [1, 3, 64, 64], False)
    assert set(fixed.profile.values()) == {(1, 3, 64, 64)} and any("fixed batch" in n for n in fixed.notes)


def test_dla_decisions() -> None:
    p = plan("jetson-orin-nx", "int8", "10.3.0", dla_core=1, gpu_fallback=True)
    assert p.device_type == "DLA" and p.dla_core == 1 and "GPU_FALLBACK" in p.builder_flags
    assert any("fall back to the GPU" in note for note in p.notes)
    strict = plan("jetson-orin-nx", "int8", "10.3.0", dla_core=0)  # opt-in, as trtexec's --allowGPUFallback
    assert "GPU_FALLBACK" not in strict.builder_flags and any("fails the build" in n for n in strict.notes)
    for target, precision, options, message in [
        ("jetson-orin-nano", "int8", {"dla_core": 0}, "no DLA cores"),
        ("jetson-orin-nx", "int8", {"dla_core": 2}, "0 … 1"),
        ("jetson-orin-nx", "fp32", {"dla_core": 0}, "FP16 and INT8 only"),
        ("jetson-agx-xavier", "fp16", {"version_compatible": True}, "8.6 or newer"),
        ("jetson-orin-nano", "fp16", {"hardware_compatibility": "ampere+"}, "desktop/datacenter"),
        ("jetson-orin-nano", "fp16", {"opt_level": 9}, "0 … 5"),
    ]:
        version = get_target(target).gpu.tensorrt.min
        with pytest.raises(EdgekitError, match=message):
            plan(target, precision, version, **options)
    with pytest.raises(EdgekitError, match=r"has TensorRT 10\.3"):
        plan("jetson-orin-nano", "fp16", "8.6.1")  # JetPack 6/7 never ship 8.6


def test_sparse_weights_only_where_accelerated() -> None:
    assert "SPARSE_WEIGHTS" in plan("jetson-orin-nano", "int8", "10.3.0", pruned_2_4=True).builder_flags
    assert "SPARSE_WEIGHTS" not in plan("jetson-orin-nano", "int8", "10.3.0").builder_flags
    xavier = plan("jetson-agx-xavier", "int8", "8.5.2", pruned_2_4=True)
    assert "SPARSE_WEIGHTS" not in xavier.builder_flags and any("not accelerated" in n for n in xavier.notes)
    assert (
        "SPARSE_WEIGHTS" not in plan("jetson-orin-nano", "int8", "10.3.0", pruned_2_4=True, sparse=False).builder_flags
    )


def test_backend_source_uses_only_published_api() -> None:
    assert check_backend() == []


def test_conformance_check_fails_on_misspelled_and_removed_symbols() -> None:
    source = (Path(api_check.__file__).parent / "trt_builder.py").read_text()
    misspelled = source.replace("config.set_memory_pool_limit(", "config.set_memory_pool_limt(")
    found = check_source(misspelled, "trt_builder.py")
    assert [v.symbol for v in found] == ["IBuilderConfig.set_memory_pool_limt"] and set(found[0].versions) == set(
        VERSIONS
    )
    removed = check_source("import tensorrt as trt\nconfig.set_flag(trt.BuilderFlag.FP16)\n", "x.py")
    assert [(v.symbol, v.versions) for v in removed] == [
        ("trt.BuilderFlag.FP16", tuple(v for v in VERSIONS if v.startswith("11.")))
    ]
    legacy = "engine.num_bindings  # trt-api: legacy\n"
    assert check_source(legacy, "x.py") == [] and check_source(legacy.split("  #")[0], "x.py")


def _options_grid() -> list[BuildOptions]:
    return [
        BuildOptions(),
        BuildOptions(dla_core=0),
        BuildOptions(sparse=True, opt_level=5),
        BuildOptions(version_compatible=True),
        BuildOptions(hardware_compatibility="ampere+"),
        BuildOptions(hardware_compatibility="same-cc"),
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_name_the_planner_emits_exists_in_that_release(version: str, tmp_path: Path) -> None:
    """The compatibility table against the real API: a flag used on a release that lacks it fails here."""
    api = published_api()[version]
    checked = 0
    for target in ("rtx-40", "jetson-agx-orin", "datacenter-hopper"):
        base = get_target(target)
        wide = dataclasses.replace(
            base, gpu=dataclasses.replace(base.gpu, tensorrt=type(base.gpu.tensorrt)("8.2", "11"))
        )
        for precision in ("fp32", "fp16", "int8"):
            for options in _options_grid():
                try:
                    p = plan_build(wide, precision, options, version, *INPUT, sparse_bundle=True)
                except EdgekitError:
                    continue
                for enum, names in [
                    ("NetworkDefinitionCreationFlag", p.network_flags),
                    ("BuilderFlag", p.builder_flags),
                    ("HardwareCompatibilityLevel", (p.hardware_compatibility,)),
                    ("DeviceType", (p.device_type,)),
                ]:
                    for name in names:
                        assert name in api["members"][enum], f"{enum}.{name} is not in TensorRT {version}"
                        checked += 1
    assert checked > 20


def test_rebuild_command_and_engine_selection(tmp_path: Path) -> None:
    record = {
        "file": "engines/orin-sm87-trt10.3.0-abc.plan",
        "tensorrt_version": "10.3.0",
        "device": {"name": "Orin", "compute_capability": "8.7", "sm": 87},
        "options": BuildOptions(dla_core=1, opt_level=4).to_dict(),
        "version_compatible": False,
        "hardware_compatibility": "NONE",
    }
    manifest = {"tensorrt": {"engines": [record]}}
    assert select_engine(tmp_path, manifest["tensorrt"], "10.3.0.26", ORIN, None) is record
    with pytest.raises(EdgekitError) as wrong_version:
        select_engine(tmp_path, manifest["tensorrt"], "11.4.1", ORIN, None)
    message = str(wrong_version.value)
    assert "TensorRT 10.3.0, this machine has 11.4.1" in message
    assert f"edgekit build {tmp_path} --dla-core 1 --opt-level 4" in message
    with_fallback = BuildOptions(dla_core=1, gpu_fallback=True).to_dict()
    assert rebuild_command(tmp_path, with_fallback).endswith("--dla-core 1 --gpu-fallback")
    with pytest.raises(EdgekitError, match=r"Orin \(sm_87\), this GPU is NVIDIA H200 \(sm_90\)"):
        select_engine(tmp_path, manifest["tensorrt"], "10.3.0", H200, None)
    with pytest.raises(EdgekitError, match="no CUDA GPU"):
        select_engine(tmp_path, manifest["tensorrt"], "10.3.0", None, None)
    with pytest.raises(EdgekitError, match="carries no TensorRT engine"):
        select_engine(tmp_path, {"engines": []}, "10.3.0", ORIN, None)
    portable = {**record, "version_compatible": True}
    assert select_engine(tmp_path, {"engines": [portable]}, "10.16.0", ORIN, None) is portable
    with pytest.raises(EdgekitError, match=r"version-compatible within 10\.x"):
        select_engine(tmp_path, {"engines": [portable]}, "11.1.0", ORIN, None)
    assert (
        rebuild_command(Path("my bundle"), {"version_compatible": True})
        == "edgekit build 'my bundle' --version-compatible"
    )
