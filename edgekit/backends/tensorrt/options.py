"""TensorRT's options, declared once: the CLI's flags, `edgekit.load`'s keywords and a device run's flags
all come from here (`BackendOption`)."""

from __future__ import annotations

from edgekit.backends.option import BackendOption

OPTIONS = (
    BackendOption(
        "trust_engine_host_code",
        "--trust-engine-host-code",
        "Allow a version-compatible TensorRT engine, which runs host code stored in it: only for files you trust.",
        "run",
    ),
    BackendOption(
        "cuda_graph",
        "--cuda-graph",
        "TensorRT: replay the network as a captured CUDA graph (less launch overhead).",
        "run",
    ),
    BackendOption("dla_core", "--dla-core", "TensorRT: run on this DLA core.", "build", int_range=(0, None)),
    BackendOption(
        "gpu_fallback",
        "--gpu-fallback/--no-gpu-fallback",
        "TensorRT: let layers DLA cannot run fall back to the GPU (always reported). Default: off, as trtexec's "
        "--allowGPUFallback: such a layer fails the build.",
        "build",
    ),
    BackendOption("opt_level", "--opt-level", "TensorRT builder optimization level (0-5).", "build", int_range=(0, 5)),
    BackendOption(
        "version_compatible",
        "--version-compatible",
        "TensorRT engine that later releases of the same major can load; it embeds host code.",
        "build",
    ),
    BackendOption(
        "hardware_compatibility",
        "--hardware-compatibility",
        "TensorRT: one engine for several GPUs (desktop/datacenter Ampere or newer; default: none).",
        "build",
        choices=("none", "ampere+", "same-cc"),
    ),
    BackendOption(
        "sparse",
        "--sparse/--no-sparse",
        "TensorRT sparse weights (default: on for a 2:4-pruned bundle on Ampere or newer).",
        "build",
    ),
)
