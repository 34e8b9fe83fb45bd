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


# ---- the kit a bundle carries for devices whose JetPack cannot run edgekit (JetPack 4.6) ----------------

KIT_DIR = "trtexec"
# JetPack 5 (Python 3.8, TensorRT 8.5) is the oldest JetPack edgekit runs on: a target whose newest
# TensorRT is older gets the trtexec kit instead of `edgekit build`.
EDGEKIT_MIN_TENSORRT = (8, 5)

_CHECK_SCRIPT = '''\
"""Compare the engine's outputs (trtexec --exportOutput) with ONNX Runtime's on the same inputs, recorded
by `edgekit compile`. Python 3.6+, standard library only (JetPack 4.6)."""
import json
import sys
from os.path import dirname, join

here = dirname(__file__)
expected = json.load(open(join(here, "check_expected.json")))
agree, total, worst = 0, 0, 0.0
for index, batch in enumerate(expected["batches"]):
    exported = json.load(open(join(here, "check_output_%d.json" % index)))
    values = next(item["values"] for item in exported if "values" in item)
    width = len(batch[0])
    rows = [values[i * width:(i + 1) * width] for i in range(len(batch))]
    for got, want in zip(rows, batch):
        agree += got.index(max(got)) == want.index(max(want))
        total += 1
        worst = max(worst, max(abs(g - w) for g, w in zip(got, want)))
scale = expected["output_scale"]
print("engine vs ONNX Runtime: top-1 agreement %d/%d, max abs diff %.3g (%.2g of the output scale)"
      % (agree, total, worst, worst / scale))
sys.exit(0 if agree >= expected["min_agreement"] * total else 1)
'''


def edgekit_runs_on(tensorrt_max: str) -> bool:
    """Whether edgekit itself runs on a device whose newest TensorRT is `tensorrt_max`."""
    return version_tuple(tensorrt_max)[:2] >= EDGEKIT_MIN_TENSORRT


def write_kit(
    stage: Path,
    build: list[str],
    input_name: str,
    static_batch: bool,
    batches: list[tuple[object, object]],
    target_name: str,
    tensorrt_version: str,
) -> dict[str, object]:
    """trtexec/ in the staged bundle: build_engine.sh (build, then run each sample batch and check it),
    check_engine.py, the sample inputs (raw float32) and the reference outputs. `batches` are
    (inputs NCHW float32, reference outputs) as numpy arrays."""
    import numpy as np

    kit = stage / KIT_DIR
    kit.mkdir()
    lines = [
        "#!/bin/sh",
        f"# Build and check the TensorRT {tensorrt_version} engine for {target_name} with NVIDIA's trtexec,",
        "# from the bundle's model.onnx (made by `edgekit compile`; edgekit itself does not run on this JetPack).",
        "set -e",
        'cd "$(dirname "$0")/.."',
        'TRTEXEC="${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"',
        shell_line(["$TRTEXEC", *build[1:]]).replace("'$TRTEXEC'", '"$TRTEXEC"'),
    ]
    engine = next(word.split("=", 1)[1] for word in build if word.startswith("--saveEngine="))
    expected: list[list[list[float]]] = []
    for index, (inputs, outputs) in enumerate(batches):
        inputs, outputs = np.asarray(inputs, np.float32), np.asarray(outputs, np.float32)
        (kit / f"check_input_{index}.bin").write_bytes(np.ascontiguousarray(inputs).tobytes())
        shape = [] if static_batch else [f"--shapes={input_name}:{'x'.join(map(str, inputs.shape))}"]
        run = [
            "$TRTEXEC", f"--loadEngine={engine}", *shape,
            f"--loadInputs={input_name}:{KIT_DIR}/check_input_{index}.bin",
            f"--exportOutput={KIT_DIR}/check_output_{index}.json", "--iterations=1", "--warmUp=0", "--duration=0",
        ]  # fmt: skip
        lines.append(shell_line(run).replace("'$TRTEXEC'", '"$TRTEXEC"') + " > /dev/null")
        expected.append(outputs.reshape(len(outputs), -1).astype(float).tolist())
    lines.append(f"python3 {KIT_DIR}/check_engine.py")
    (kit / "build_engine.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (kit / "build_engine.sh").chmod(0o755)
    scale = float(max(np.abs(np.asarray(b)).max() for b in expected)) or 1.0
    record = {"batches": expected, "output_scale": scale, "min_agreement": 0.9}
    (kit / "check_expected.json").write_text(json.dumps(record), encoding="utf-8")
    (kit / "check_engine.py").write_text(_CHECK_SCRIPT, encoding="utf-8")
    (kit / "README.md").write_text(_readme(target_name, tensorrt_version, build), encoding="utf-8")
    return {"dir": KIT_DIR, "command": shell_line(build), "check_batches": len(batches)}


def _readme(target_name: str, tensorrt_version: str, build: list[str]) -> str:
    return f"""# Building this bundle's engine on {target_name} (TensorRT {tensorrt_version}) with trtexec

edgekit needs Python 3.8 or newer; this device's JetPack ships Python 3.6, so the engine is built with
NVIDIA's own `trtexec` instead of `edgekit build`. On the device, from the bundle directory:

    sh trtexec/build_engine.sh          # TRTEXEC=/path/to/trtexec if it is not /usr/src/tensorrt/bin/trtexec

It builds the engine from `model.onnx` with the build options recorded at compile time:

    {shell_line(build)}

then runs it on the sample inputs in this folder and `check_engine.py` (standard library only) compares
its outputs with ONNX Runtime's, recorded at compile time (exit 1 below 90 % top-1 agreement).

Preprocessing is in `manifest.json` ("preprocessing": resize the shorter side, centre crop, mean/std on
RGB in [0, 1], NCHW float32); the fused CUDA kernel edgekit uses on newer JetPacks is `kernels/preprocess.cu`
(compile it with the device's nvcc or NVRTC). The engine is specific to this TensorRT version and GPU.
"""
