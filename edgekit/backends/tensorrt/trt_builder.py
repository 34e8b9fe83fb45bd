"""Building a TensorRT engine from the bundle's ONNX file: the thin layer that calls TensorRT.

Every decision was made by `recipe.plan_build`; this module only looks the names up and calls the
API. Names follow one convention that `api_check.py` relies on to check every call against
TensorRT's published Python API: `builder`, `network`, `parser`, `config`, `profile`, `cache`,
`runtime`, `engine`, `inspector`, `layer` always hold the TensorRT object of that name.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edgekit.backends.tensorrt.compat import supports
from edgekit.backends.tensorrt.recipe import BuildPlan
from edgekit.core.errors import EdgekitError


@dataclasses.dataclass
class BuiltEngine:
    plan: bytes
    placement: dict[str, Any]
    timing_cache: bytes | None


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, or None where it is not installed."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return str(trt.__version__)


def _network_flags(trt: Any, names: tuple[str, ...]) -> int:
    flags = 0
    for name in names:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return flags


def _parse(trt: Any, network: Any, logger: Any, onnx_path: Path) -> Any:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgekitError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path.name}: {errors or 'no details'}; "
            "recompile the bundle for this device's target (its ONNX opset must be one this TensorRT reads)"
        )
    return parser  # the parser owns weights the network refers to: keep it alive until the build ends


def _dla_capable(config: Any, network: Any) -> tuple[int, list[str]]:
    """How many layers DLA can take, and the names of those that must run on the GPU."""
    gpu_only = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if not config.can_run_on_DLA(layer):
            gpu_only.append(layer.name)
    return network.num_layers - len(gpu_only), gpu_only


def _configure(trt: Any, builder: Any, config: Any, plan: BuildPlan, cache_bytes: bytes | None) -> Any:
    if supports(plan.tensorrt_version, "memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    else:
        config.max_workspace_size = plan.workspace_bytes  # trt-api: legacy
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    profile.set_shape(plan.input_name, plan.profile["min"], plan.profile["opt"], plan.profile["max"])
    config.add_optimization_profile(profile)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer names and placement for the inspector
    if plan.opt_level is not None:
        config.builder_optimization_level = plan.opt_level
    if plan.hardware_compatibility != "NONE":
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, plan.hardware_compatibility)
    if plan.device_type == "DLA":
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    cache = config.create_timing_cache(cache_bytes or b"")
    config.set_timing_cache(cache, False)  # ignore_mismatch=False: a cache from another device is not used
    return cache


def _engine_layers(trt: Any, plan_bytes: bytes, host_code: bool, logger: Any) -> list[dict[str, Any]]:
    runtime = trt.Runtime(logger)
    if host_code:
        runtime.engine_host_code_allowed = True  # a version-compatible plan we have just built ourselves
    engine = runtime.deserialize_cuda_engine(plan_bytes)
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return [entry if isinstance(entry, dict) else {"Name": str(entry)} for entry in info.get("Layers", [])]


def placement_summary(plan: BuildPlan, layers: list[dict[str, Any]], dla_capable: int, gpu_only: list[str]) -> dict:
    """Where the engine's layers run. DLA subgraphs show up in the inspector as `{ForeignNode[...]}` layers."""
    on_dla = [entry["Name"] for entry in layers if str(entry.get("Name", "")).startswith("{ForeignNode")]
    summary: dict[str, Any] = {"device": plan.device_type, "engine_layers": len(layers)}
    if plan.device_type == "DLA":
        summary.update(
            dla_core=plan.dla_core,
            dla_subgraphs=len(on_dla),
            network_layers_dla_capable=dla_capable,
            network_layers_on_gpu=gpu_only,
            gpu_fallback=bool(gpu_only) or not on_dla,
        )
    return summary


def build_engine(onnx_path: Path, plan: BuildPlan, cache_bytes: bytes | None, verbose: bool = False) -> BuiltEngine:
    """Parse, configure and build; raises EdgekitError when TensorRT refuses the model or the options."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plan.network_flags))
    parser = _parse(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    cache = _configure(trt, builder, config, plan, cache_bytes)
    dla_capable, gpu_only = _dla_capable(config, network) if plan.device_type == "DLA" else (0, [])
    serialized = builder.build_serialized_network(network, config)
    del parser
    if serialized is None:
        raise EdgekitError(
            f"TensorRT {trt.__version__} could not build an engine from {onnx_path.name} with "
            f"{', '.join(plan.builder_flags) or 'default flags'} (its log above says why); try without "
            "--dla-core / --opt-level, or recompile the bundle"
        )
    plan_bytes = bytes(serialized)
    layers = _engine_layers(trt, plan_bytes, "VERSION_COMPATIBLE" in plan.builder_flags, logger)
    return BuiltEngine(
        plan=plan_bytes,
        placement=placement_summary(plan, layers, dla_capable, gpu_only),
        timing_cache=bytes(cache.serialize()),
    )
