"""What each TensorRT version can do: the one table that version checks read.

TensorRT moved a lot between 8.2 (Jetson Nano) and 11.x (desktops, Thor): the name-based tensor API
arrived in 8.5, strongly typed networks in 9/10, and 11 removed weak typing (no FP16/INT8 builder
flags, no calibrators). Every version-dependent choice in the backend asks `supports(version, feature)`
instead of comparing version numbers where it happens, so adding a TensorRT release means editing
this table and nothing else.
"""

from __future__ import annotations

import dataclasses

from edgekit.targets import VersionRange, version_tuple


@dataclasses.dataclass(frozen=True)
class Feature:
    versions: VersionRange
    why: str


OLDEST_SUPPORTED = "8.2"  # JetPack 4.6 (Jetson Nano)

FEATURES: dict[str, Feature] = {
    # Networks and precision
    "explicit_batch_flag": Feature(
        VersionRange("8.0", "9"), "create_network needs EXPLICIT_BATCH before 10.0 (ignored in 10, gone in 11)"
    ),
    "strongly_typed": Feature(
        VersionRange("10.0"), "NetworkDefinitionCreationFlag.STRONGLY_TYPED: precision comes from the ONNX file"
    ),
    "strongly_typed_always": Feature(VersionRange("11.0"), "11.x networks are always strongly typed"),
    "precision_flags": Feature(VersionRange("8.0", "10"), "BuilderFlag.FP16 / INT8 (weak typing), removed in 11.0"),
    # Builder configuration
    "memory_pool_limit": Feature(VersionRange("8.3"), "set_memory_pool_limit (max_workspace_size before 8.3)"),
    "optimization_level": Feature(VersionRange("8.6"), "IBuilderConfig.builder_optimization_level"),
    "version_compatible": Feature(VersionRange("8.6"), "BuilderFlag.VERSION_COMPATIBLE plans (lean runtime inside)"),
    "hardware_compatibility": Feature(VersionRange("8.6"), "IBuilderConfig.hardware_compatibility_level"),
    "same_cc_compatibility": Feature(
        VersionRange("10.9"), "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY (NVIDIA/TensorRT tag v10.9.0)"
    ),
    "sparse_weights": Feature(VersionRange("8.0"), "BuilderFlag.SPARSE_WEIGHTS (2:4, Ampere and newer)"),
    "dla": Feature(VersionRange("8.0"), "DeviceType.DLA, DLA_core, BuilderFlag.GPU_FALLBACK"),
    "timing_cache": Feature(VersionRange("8.0"), "IBuilderConfig.create_timing_cache / set_timing_cache"),
    "engine_inspector": Feature(VersionRange("8.2"), "ICudaEngine.create_engine_inspector (layer placement)"),
    # Runtime
    "tensor_address_api": Feature(
        VersionRange("8.5"), "set_tensor_address / set_input_shape / execute_async_v3 (bindings API before)"
    ),
    "host_code_flag": Feature(VersionRange("8.6"), "Runtime.engine_host_code_allowed for version-compatible plans"),
}


def supports(version: str, feature: str) -> bool:
    return FEATURES[feature].versions.admits(version)


def check_buildable(version: str) -> str | None:
    """Why edgekit cannot drive this TensorRT version, or None."""
    if version_tuple(version) < version_tuple(OLDEST_SUPPORTED):
        return f"TensorRT {version} is older than {OLDEST_SUPPORTED}, the oldest edgekit builds with (JetPack 4.6)"
    return None
