"""The device side without a device: trtexec commands against each TensorRT release's real flags, the
JetPack 4.6 kit's checker, `edgekit doctor` on a machine without a GPU, and the Python 3.8 floor of the
modules a device imports (the parts vermin cannot see: aliases and unions evaluated at import)."""

from __future__ import annotations

import ast
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.backends.tensorrt.bundle_engines import trtexec_build
from edgekit.backends.tensorrt.doctor import jetson_release
from edgekit.backends.tensorrt.recipe import BuildOptions
from edgekit.backends.tensorrt.trtexec import FLAGS_FILE, check_command, write_kit
from edgekit.core.errors import EdgekitError
from edgekit.targets import list_targets

ROOT = Path(__file__).resolve().parent.parent
RELEASES = json.loads(FLAGS_FILE.read_text())["versions"]
OPTION_SETS = {
    "recorded": BuildOptions(),
    "dla": BuildOptions(dla_core=0),
    "dla-no-fallback": BuildOptions(dla_core=1, gpu_fallback=False),
    "sparse": BuildOptions(sparse=True),
    "opt-level": BuildOptions(opt_level=5),
    "version-compatible": BuildOptions(version_compatible=True),
    "ampere+": BuildOptions(hardware_compatibility="ampere+"),
}


def _manifest(target_name: str, precision: str, batch: int | None) -> dict:
    return {
        "model_file": "model.onnx",
        "precision": precision,
        "input": {"name": "input", "shape": [batch, 3, 224, 224]},
        "sparsity": None,
    }


def _cases() -> list[tuple[str, str, str, str, int | None]]:
    cases = []
    for target in list_targets():
        if target.gpu is None:
            continue
        # A target newer than every extracted release (Thor: 11.4.1+) is checked against the newest release of
        # its major (11.1 for 11.x: the mirror of NVIDIA's sources has no 11.4 tag).
        versions = [v for v in RELEASES if target.gpu.tensorrt.admits(v)] or [target.gpu.tensorrt.min]
        for version, precision, options, batch in itertools.product(
            versions, target.precisions, OPTION_SETS, (None, 1)
        ):
            cases.append((target.name, version, precision, options, batch))
    return cases


CASES = _cases()


def test_every_gpu_target_has_a_release_to_check_against() -> None:
    covered = {name for name, *_ in CASES}
    gpu_targets = {t.name for t in list_targets() if t.gpu is not None}
    assert covered == gpu_targets, gpu_targets - covered
    assert {"8.2.1", "8.5.2", "10.3.0", "11.1.0"} <= set(RELEASES)


def test_generated_trtexec_commands_use_only_flags_their_release_parses() -> None:
    """Every GPU target × TensorRT release it admits × precision × option set × dynamic/static batch."""
    targets = {t.name: t for t in list_targets()}
    checked = refused = 0
    for name, version, precision, option_set, batch in CASES:
        try:
            words = trtexec_build(_manifest(name, precision, batch), targets[name], OPTION_SETS[option_set], version)
        except EdgekitError:  # a combination the target or release cannot have (DLA at FP32, …): refused
            refused += 1
            continue
        unknown = check_command(words, version)
        assert not unknown, (name, version, precision, option_set, unknown)
        checked += 1
    assert checked > 100 and refused > 0


@pytest.mark.parametrize(
    ("version", "flag"), [("10.3.0", "--workspace=1024"), ("8.2.1", "--memPoolSize=workspace:1024"),
                          ("11.1.0", "--int8"), ("8.5.2", "--skipInference")],
)  # fmt: skip
def test_the_checker_rejects_flags_a_release_lacks(version: str, flag: str) -> None:
    assert check_command(["trtexec", "--onnx=model.onnx", flag], version) == [flag]


def test_release_specific_translation() -> None:
    nano = next(t for t in list_targets() if t.name == "jetson-nano")
    orin = next(t for t in list_targets() if t.name == "jetson-orin-nx")
    old = trtexec_build(_manifest("jetson-nano", "fp16", None), nano, BuildOptions(), "8.2.1")
    assert "--fp16" in old and "--workspace=1024" in old and "--buildOnly" in old
    assert "--minShapes=input:1x3x224x224" in old and "--maxShapes=input:4x3x224x224" in old
    new = trtexec_build(
        _manifest("jetson-orin-nx", "int8", 1), orin, BuildOptions(dla_core=1, gpu_fallback=True), "10.3.0"
    )
    assert "--stronglyTyped" in new and "--int8" not in new and "--useDLACore=1" in new and "--allowGPUFallback" in new
    assert not any(w.startswith("--minShapes") for w in new)  # a fixed batch takes no shapes
    newest = trtexec_build(_manifest("jetson-orin-nx", "int8", None), orin, BuildOptions(), "11.1.0")
    assert not {"--stronglyTyped", "--int8", "--fp16"} & set(newest) and "--skipInference" in newest


def _run_kit_checker(kit: Path, outputs: list[np.ndarray]) -> subprocess.CompletedProcess[str]:
    for index, batch in enumerate(outputs):  # what trtexec --exportOutput writes
        record = [{"name": "logits", "dimensions": "x".join(map(str, batch.shape)), "values": batch.ravel().tolist()}]
        (kit / f"check_output_{index}.json").write_text(json.dumps(record))
    return subprocess.run([sys.executable, str(kit / "check_engine.py")], capture_output=True, text=True, timeout=60)


def test_jetpack46_kit_checks_the_engine_outputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((4, 3, 8, 8)), rng.standard_normal((4, 7))) for _ in range(4)]
    build = ["trtexec", "--onnx=model.onnx", "--saveEngine=trtexec/e.plan", "--fp16", "--workspace=1024", "--buildOnly"]
    write_kit(tmp_path, build, "input", False, batches, "jetson-nano", "8.2")
    kit = tmp_path / "trtexec"
    script = (kit / "build_engine.sh").read_text()
    runs = [line.split()[1:] for line in script.splitlines() if line.startswith('"$TRTEXEC"')]
    assert len(runs) == 5  # build, then one run per sample batch
    assert all(not check_command(["trtexec", *[w for w in run if w.startswith("--")]], "8.2.1") for run in runs)
    written = np.fromfile(kit / "check_input_0.bin", np.float32).reshape(4, 3, 8, 8)
    np.testing.assert_array_equal(written, batches[0][0].astype(np.float32))
    same = _run_kit_checker(kit, [b[1] + 1e-3 for b in batches])
    assert same.returncode == 0 and "top-1 agreement 16/16" in same.stdout, same.stdout + same.stderr
    wrong = _run_kit_checker(kit, [-b[1] for b in batches])  # an engine that ranks classes backwards
    assert wrong.returncode == 1, wrong.stdout
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    result = subprocess.run([vermin, "-q", "-t=3.6-", "--violations", "--no-tips", str(kit / "check_engine.py")])
    assert result.returncode == 0  # it runs on JetPack 4.6's Python 3.6


def test_jetson_release_is_read_from_nv_tegra_release(tmp_path: Path) -> None:
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n")
    assert jetson_release(release) == ("R35.4.1", "5")
    release.write_text("# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref\n")
    assert jetson_release(release) == ("R32.7.4", "4.6")
    assert jetson_release(tmp_path / "missing") is None


def test_doctor_on_a_machine_without_a_gpu(edgekit_cli) -> None:
    result = edgekit_cli("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    findings = {f["topic"]: f for f in report["findings"]}
    assert findings["gpu"]["detail"].startswith("no GPU") and findings["edgekit build"]["status"] != "ok"
    assert findings["onnxruntime"]["status"] == "ok" and "from " in findings["onnxruntime"]["detail"]
    assert findings["tensorrt"]["status"] == "missing" and findings["tensorrt"]["fix"]
    assert report["host_target"] == "x86-cpu" and findings["memory"]["detail"].endswith("MiB")
    text = edgekit_cli("doctor")
    assert text.returncode == 0 and "[--] tensorrt" in text.stdout and "→" in text.stdout


def test_print_trtexec_refuses_a_cpu_bundle_and_a_foreign_release(bundle: Path, edgekit_cli) -> None:
    result = edgekit_cli("build", bundle, "--print-trtexec")
    assert result.returncode == 2 and "--print-trtexec is for TensorRT bundles" in result.stderr


DEVICE_COMMANDS = """
import json, sys
from edgekit.cli.main import main
bundle = sys.argv[1]
for args in (["build", bundle, "--print-trtexec"], ["build", bundle], ["inspect", bundle], ["doctor"]):
    try:
        main(args)
    except SystemExit as exit:
        print(json.dumps({"args": args[:2], "code": exit.code}), file=sys.stderr)
loaded = sorted(m for m in sys.modules if m.startswith("edgekit."))
print(json.dumps(loaded))
"""


def test_the_device_commands_load_no_convert_half(orin_int8: dict) -> None:
    """What `edgekit build` (the engine, or trtexec's command), `inspect` and `doctor` import when they run
    on a TensorRT bundle: the run halves only (the device install has no converter's libraries)."""
    result = subprocess.run(
        [sys.executable, "-c", DEVICE_COMMANDS, str(orin_int8["path"])], capture_output=True, text=True, timeout=300
    )
    codes = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [c["code"] for c in codes] == [0, 2, 0, 0], result.stderr  # no GPU here: the build itself exits 2
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert "edgekit.backends.tensorrt.run" in loaded and "edgekit.pipeline.device_build" in loaded
    convert = [m for m in loaded if m.endswith((".convert", ".converters", ".qdq", ".qdq_rules"))]
    assert not convert, convert


# ---- the Python 3.8 floor, beyond vermin -----------------------------------------------------------------

_GENERICS = {"dict", "list", "tuple", "set", "frozenset", "type"}


def _evaluated_at_import(tree: ast.AST) -> list[ast.AST]:
    """Nodes outside annotations (which `from __future__ import annotations` leaves unevaluated)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]
            args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            for annotation in [a.annotation for a in args if a.annotation is not None] + [node.returns]:
                if annotation is not None:
                    skip.update(id(n) for n in ast.walk(annotation))
        elif isinstance(node, ast.AnnAssign):
            skip.update(id(n) for n in ast.walk(node.annotation))
    return [node for node in ast.walk(tree) if id(node) not in skip]


def test_device_modules_evaluate_no_3_9_generics_or_3_10_unions() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from device_modules import device_modules
    finally:
        sys.path.pop(0)
    problems = []
    for name, path in device_modules().items():
        tree = ast.parse(path.read_text())
        for node in _evaluated_at_import(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in _GENERICS:
                problems.append(f"{name}:{node.lineno} {node.value.id}[...] (Python 3.9+)")
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
                sides = (node.left, node.right)
                if any(isinstance(s, ast.Constant) and s.value is None for s in sides) or any(
                    isinstance(s, ast.Name) and s.id in {"int", "str", "float", "bool", "bytes", *_GENERICS}
                    for s in sides
                ):
                    problems.append(f"{name}:{node.lineno} X | Y of types (Python 3.10+)")
    assert not problems, problems


def test_the_generic_check_catches_the_runtime_alias_it_is_for() -> None:
    source = "from typing import Any, Callable\nX = Callable[[dict[str, Any]], int | None]\n"
    tree = ast.parse(source + "def f(a: dict[str, int]) -> None: ...\n")
    kinds = [type(n).__name__ for n in _evaluated_at_import(tree) if isinstance(n, (ast.Subscript, ast.BinOp))]
    assert "BinOp" in kinds and kinds.count("Subscript") == 2  # Callable[...] and dict[...] of the alias only


def test_device_modules_exclude_the_workstation() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from device_modules import device_modules, is_workstation
    finally:
        sys.path.pop(0)
    names = set(device_modules())
    assert {"edgekit.runtime.model", "edgekit.cli.doctor_cmd", "edgekit.backends.tensorrt.bundle_engines"} <= names
    assert not [n for n in names if is_workstation(n)]
    assert "edgekit.pipeline.compile" not in names and "edgekit.model.checkpoint" not in names
