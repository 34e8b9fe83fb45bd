"""The TensorRT build, decided as data: flags, profile, workspace, DLA, before TensorRT is touched.

`plan_build` turns (target, bundle precision, the user's options, TensorRT version) into a `BuildPlan`
of enum *names*; `trt_builder.py` only looks those names up in `tensorrt` and calls the API. So every
decision is unit-tested on a machine without TensorRT, and a bad combination (DLA at FP32, DLA on a
device without one, a version-compatible plan on TensorRT 8.5) fails in a second, not after a build.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekit.backends.tensorrt.compat import check_buildable, supports
from edgekit.core.errors import EdgekitError
from edgekit.targets import Target

OPT_LEVELS = range(6)  # IBuilderConfig.builder_optimization_level: 0 (fast build) … 5 (slowest, best kernels)
HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """What the user may choose at `edgekit build` / `edgekit compile` time."""

    dla_core: int | None = None  # run on this DLA core (layers DLA cannot run fall back to the GPU)
    gpu_fallback: bool = False  # opt-in as trtexec's --allowGPUFallback: else a layer DLA cannot run fails the build
    opt_level: int | None = None  # None: TensorRT's default (3)
    version_compatible: bool = False  # plan runs on later TensorRT versions; embeds host code (trust needed)
    hardware_compatibility: str = "none"  # "ampere+": one plan for every Ampere-or-newer GPU (desktops)
    sparse: bool | None = None  # None: on when the bundle is 2:4 sparse and the GPU accelerates it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildOptions:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """Everything `builder.build_engine` sets, as TensorRT enum member names."""

    tensorrt_version: str
    precision: str
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag members
    builder_flags: tuple[str, ...]  # BuilderFlag members
    workspace_bytes: int
    profile: dict[str, tuple[int, ...]]  # "min" / "opt" / "max" input shapes
    input_name: str
    device_type: str  # DeviceType member: "GPU" or "DLA"
    dla_core: int | None
    opt_level: int | None
    hardware_compatibility: str  # HardwareCompatibilityLevel member
    notes: tuple[str, ...]  # said to the user and recorded with the engine

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "profile": {k: list(v) for k, v in self.profile.items()}}


def _check_options(target: Target, precision: str, options: BuildOptions, version: str) -> None:
    gpu = target.gpu
    if gpu is None:
        raise EdgekitError(f"target {target.name} is not a GPU target; TensorRT needs one (see `edgekit targets`)")
    if not gpu.tensorrt.admits(version):
        raise EdgekitError(
            f"target {target.name} has TensorRT {gpu.tensorrt}, this machine has {version}; build on the device "
            "itself or choose the target that matches this machine"
        )
    problem = check_buildable(version)
    if problem:
        raise EdgekitError(problem)
    if options.opt_level is not None and options.opt_level not in OPT_LEVELS:
        raise EdgekitError("--opt-level must be 0 … 5 (TensorRT's builder optimization level)")
    if options.opt_level is not None and not supports(version, "optimization_level"):
        raise EdgekitError(f"--opt-level needs TensorRT 8.6 or newer (this is {version})")
    if options.hardware_compatibility not in HARDWARE_COMPATIBILITY:
        raise EdgekitError(f"--hardware-compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}")
    if options.dla_core is not None:
        if gpu.dla_cores == 0:
            raise EdgekitError(f"target {target.name} has no DLA cores; drop --dla-core")
        if not 0 <= options.dla_core < gpu.dla_cores:
            raise EdgekitError(f"--dla-core must be 0 … {gpu.dla_cores - 1} on {target.name}")
        if precision == "fp32":
            raise EdgekitError("DLA runs FP16 and INT8 only; compile the bundle with --precision fp16 or int8")
        if options.version_compatible or options.hardware_compatibility != "none":
            raise EdgekitError("DLA engines cannot be version- or hardware-compatible; drop those options")
    if options.version_compatible and not supports(version, "version_compatible"):
        raise EdgekitError(f"version-compatible plans need TensorRT 8.6 or newer (this is {version})")
    if options.hardware_compatibility != "none":
        if not supports(version, "hardware_compatibility"):
            raise EdgekitError(f"hardware-compatible plans need TensorRT 8.6 or newer (this is {version})")
        if gpu.sm < 80 or target.arch != "x86_64":
            raise EdgekitError("hardware-compatible plans exist for Ampere-or-newer desktop/datacenter GPUs only")
        if options.hardware_compatibility == "same-cc" and not supports(version, "same_cc_compatibility"):
            raise EdgekitError(f"--hardware-compatibility same-cc needs TensorRT 10.9 or newer (this is {version})")


def plan_build(
    target: Target,
    precision: str,
    options: BuildOptions,
    tensorrt_version: str,
    input_name: str,
    input_shape: list[int | None],
    sparse_bundle: bool,
) -> BuildPlan:
    """Decide the build; raises EdgekitError for a combination TensorRT or the device cannot do."""
    _check_options(target, precision, options, tensorrt_version)
    gpu = target.gpu
    assert gpu is not None  # _check_options guarantees it; narrows the type
    notes: list[str] = []
    network_flags: list[str] = []
    builder_flags: list[str] = []
    if supports(tensorrt_version, "explicit_batch_flag"):
        network_flags.append("EXPLICIT_BATCH")
    if supports(tensorrt_version, "strongly_typed") and not supports(tensorrt_version, "strongly_typed_always"):
        network_flags.append("STRONGLY_TYPED")
    if not supports(tensorrt_version, "strongly_typed"):
        # Weak typing: the Q/DQ or FP16 file only says what it wants; the flags allow TensorRT to honour it.
        builder_flags += {"fp32": [], "fp16": ["FP16"], "int8": ["INT8"]}[precision]
    sparse = options.sparse if options.sparse is not None else sparse_bundle
    if sparse:
        if not gpu.sparse_tensor_cores:
            notes.append(f"2:4 sparse weights are not accelerated on sm_{gpu.sm} (Ampere or newer); built dense")
        else:
            builder_flags.append("SPARSE_WEIGHTS")
            if not sparse_bundle:
                notes.append("sparse weights on, but the bundle was not pruned to 2:4: TensorRT will find little")
    elif sparse_bundle and options.sparse is False:
        notes.append("the bundle is 2:4 sparse but --no-sparse was given: built dense")
    device_type = "GPU"
    if options.dla_core is not None:
        device_type = "DLA"
        if options.gpu_fallback:
            builder_flags.append("GPU_FALLBACK")
            notes.append("layers DLA cannot run fall back to the GPU: the engine's layer placement is reported")
        else:
            notes.append("a layer DLA cannot run fails the build (--gpu-fallback lets it run on the GPU instead)")
    if options.version_compatible:
        builder_flags.append("VERSION_COMPATIBLE")
        notes.append("version-compatible plan: it embeds host code, so loading it needs --trust-engine-host-code")
    batch = input_shape[0]
    profile_batches = (target.batch.min, target.batch.opt, target.batch.max)
    if batch is not None:
        if batch not in profile_batches or target.batch.max != batch:
            notes.append(f"the ONNX input has a fixed batch of {batch}; the target's batch profile is not used")
        profile_batches = (batch, batch, batch)
    elif device_type == "DLA" and target.batch.max > 1:
        notes.append("DLA engines run best at one batch size; the profile keeps the target's min/opt/max anyway")
    dims = tuple(int(d) for d in input_shape[1:] if d is not None)
    if len(dims) != len(input_shape) - 1:
        raise EdgekitError(f"input {input_name!r} has a dynamic dimension besides the batch: {input_shape}")
    return BuildPlan(
        tensorrt_version=tensorrt_version,
        precision=precision,
        network_flags=tuple(network_flags),
        builder_flags=tuple(builder_flags),
        workspace_bytes=gpu.workspace_mb << 20,
        profile={name: (b, *dims) for name, b in zip(("min", "opt", "max"), profile_batches)},
        input_name=input_name,
        device_type=device_type,
        dla_core=options.dla_core,
        opt_level=options.opt_level,
        hardware_compatibility=HARDWARE_COMPATIBILITY[options.hardware_compatibility],
        notes=tuple(notes),
    )


def check_for_target(target: Target, precision: str, options: BuildOptions) -> None:
    """At compile time: the options must work with the oldest TensorRT the target's device can have."""
    if target.gpu is None:
        raise EdgekitError(f"TensorRT options apply to GPU targets; {target.name} is a {target.kind} target")
    _check_options(target, precision, options, target.gpu.tensorrt.min)
