"""The `trtexec` command that builds a bundle's engine with NVIDIA's own tool, for a given TensorRT version.

For devices whose JetPack cannot run edgekit (JetPack 4.6: Python 3.6), and for anyone who prefers
NVIDIA's tool, `edgekit build --print-trtexec` prints it and GPU bundles for such targets carry it. The
command is made from the same `BuildPlan` as edgekit's own build (`recipe.py`), translated to the flags
of that TensorRT release: `--workspace` (8.2) vs `--memPoolSize` (8.4+), `--int8`/`--fp16` for weakly
typed networks (8.x) vs `--stronglyTyped` (10.x) vs nothing (11.x, always strongly typed), `--buildOnly`
(8.2/8.5) vs `--skipInference` (8.6+). `trtexec_flags.json` (from NVIDIA's sources, made by
scripts/extract_trtexec_flags.py) lists the flags each release parses; tests check every command against it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from edgekit.backends.tensorrt.recipe import BuildPlan
from edgekit.core.versions import version_tuple

FLAGS_FILE = Path(__file__).with_name("trtexec_flags.json")
_BUILDER_FLAGS = {
    "FP16": "--fp16",
    "INT8": "--int8",
    "SPARSE_WEIGHTS": "--sparsity=enable",
    "GPU_FALLBACK": "--allowGPUFallback",
    "VERSION_COMPATIBLE": "--versionCompatible",
}
_HARDWARE = {"AMPERE_PLUS": "ampere+", "SAME_COMPUTE_CAPABILITY": "sameComputeCapability"}


def _shape(name: str, dims: tuple[int, ...]) -> str:
    return f"{name}:{'x'.join(map(str, dims))}"


def trtexec_command(
    plan: BuildPlan,
    onnx: str,
    engine: str,
    static_batch: bool,
    timing_cache: str | None = None,
    program: str = "trtexec",
) -> list[str]:
    """argv of trtexec building `engine` from `onnx` as `plan` says, for `plan.tensorrt_version`."""
    version = plan.tensorrt_version
    words = [program, f"--onnx={onnx}", f"--saveEngine={engine}"]
    if "STRONGLY_TYPED" in plan.network_flags:
        words.append("--stronglyTyped")
    words += [_BUILDER_FLAGS[flag] for flag in plan.builder_flags]
    workspace_mib = plan.workspace_bytes >> 20
    if version_tuple(version) < (8, 4):
        words.append(f"--workspace={workspace_mib}")
    else:
        words.append(f"--memPoolSize=workspace:{workspace_mib}")
    if not static_batch:  # trtexec refuses shapes for an input whose batch is fixed in the ONNX file
        words += [f"--{which}Shapes={_shape(plan.input_name, plan.profile[which])}" for which in ("min", "opt", "max")]
    if plan.device_type == "DLA":
        words.append(f"--useDLACore={plan.dla_core}")
    if plan.opt_level is not None:
        words.append(f"--builderOptimizationLevel={plan.opt_level}")
    if plan.hardware_compatibility in _HARDWARE:
        words.append(f"--hardwareCompatibilityLevel={_HARDWARE[plan.hardware_compatibility]}")
    if timing_cache:
        words.append(f"--timingCacheFile={timing_cache}")
    words.append("--skipInference" if version_tuple(version) >= (8, 6) else "--buildOnly")  # --buildOnly: 8.2, 8.5
    return words


def check_command(words: list[str], version: str) -> list[str]:
    """The flags in `words` that trtexec of `version` does not parse, or parses with a deprecation warning
    (the nearest release in trtexec_flags.json at or below `version`)."""
    release = _release(version)
    accepted = set(release["flags"]) - set(release.get("deprecated", {}))
    return [word for word in words[1:] if word.split("=", 1)[0] not in accepted]


def _release(version: str) -> dict:
    versions = json.loads(FLAGS_FILE.read_text(encoding="utf-8"))["versions"]
    known = sorted(versions, key=version_tuple)
    at_or_below = [v for v in known if version_tuple(v)[:2] <= version_tuple(version)[:2]]
    return versions[at_or_below[-1] if at_or_below else known[0]]


def shell_line(words: list[str]) -> str:
    return " ".join(shlex.quote(word) for word in words)
