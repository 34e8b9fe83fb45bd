"""The layout's rules (ARCHITECTURE.md), checked on every `import` in the AST, including those inside
functions: imports flow one way, TensorRT and CUDA stay in their folder, generic code never names a
backend, and the run side works with the workstation's libraries blocked."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgekit"
BACKEND_NAMES = ("onnxruntime", "openvino", "litert", "tensorrt")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path) -> set[str]:
    """Every module `path` imports, absolute, wherever the statement is (top level or inside a function)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [{part.strip() for part in layer.split("|")} for layer in contract["layers"]]


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "edgekit" and len(parts) > 1 else None


def test_packages_import_only_lower_layers_and_form_no_cycle() -> None:
    rank = {package: index for index, layer in enumerate(_layers()) for package in layer}
    edges: dict[str, set[str]] = {}
    upward = []
    for name, path in _modules().items():
        source = _package_of(name)
        for imported in _imports(name, path):
            target = _package_of(imported)
            if source is None or target is None or target == source or target not in rank:
                continue
            edges.setdefault(source, set()).add(target)
            if rank[target] <= rank[source]:  # the same layer (independent siblings) or a higher one
                upward.append(f"{name} imports {imported}")
    assert not upward, upward
    assert set(rank) >= {_package_of(n) for n in _modules() if _package_of(n)}, "a package missing from the layers"

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in trail, f"import cycle: {' → '.join((*trail, node))}"
        for nxt in edges.get(node, ()):
            visit(nxt, (*trail, node))

    for package in edges:
        visit(package, ())


def test_tensorrt_and_cuda_are_imported_only_in_their_folder() -> None:
    misplaced = []
    for name, path in _modules().items():
        for imported in _imports(name, path):
            top = imported.split(".")[0]
            if top == "tensorrt" and not name.startswith("edgekit.backends.tensorrt"):
                misplaced.append(f"{name} imports {imported}")
            if top == "cuda" and name != "edgekit.backends.tensorrt.cuda":
                misplaced.append(f"{name} imports {imported} (only backends/tensorrt/cuda.py wraps CUDA)")
    assert not misplaced, misplaced


# Where a backend's name is written outside its folder for another reason than naming the backend: each is
# a module path, a distribution name or a file-format key that happens to be spelled the same.
NAME_ALLOWED = {
    ("edgekit.core.install", "onnxruntime"): "the Python module a workstation command needs installed",
    ("edgekit.measure.environment", "onnxruntime"): "a distribution whose version results record",
    ("edgekit.measure.environment", "openvino"): "a distribution whose version results record",
    ("edgekit.measure.environment", "litert"): "distributions whose versions results record (ai-edge-litert...)",
    ("edgekit.targets", "tensorrt"): "the [gpu] table's key for a GPU target's TensorRT versions (target files)",
    ("edgekit.cli.build_cmd", "tensorrt"): "`edgekit build` makes TensorRT engines: its trtexec flags and record",
}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def backend_names_in_generic_code(package: Path) -> list[str]:
    """Every string literal in generic code (outside edgekit/backends/) that is a backend's name or holds one
    as a word of an identifier-like value ("tensorrt", "openvino_int8", "--tensorrt-x"); docstrings aside."""
    words = "|".join(BACKEND_NAMES)
    pattern = re.compile(rf"(?:^|[^a-z]|_)({words})(?:$|[^a-z]|_)")
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name.startswith("edgekit.backends."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in docstrings:
                continue
            value = node.value
            identifier_like = " " not in value.strip() and len(value) < 60
            match = pattern.search(value.lower()) if identifier_like else None
            if match and (name, match.group(1)) not in NAME_ALLOWED:
                found.append(f"{name}:{node.lineno} writes {value!r}")
    return found


def test_generic_code_never_names_a_backend() -> None:
    """Generic code reaches a backend through the registries and its hooks (ARCHITECTURE.md), never by name:
    not in a comparison, not in a dict key, not in an option's choices, not in a table of topics."""
    found = backend_names_in_generic_code(PACKAGE)
    assert not found, found


@pytest.mark.parametrize(
    "planted",
    [
        'if manifest.backend == "openvino":\n    pass\n',
        'BEST = {"x86-cpu": "onnxruntime"}\n',
        'CHOICES = ("cpu", "tensorrt")\n',
        'FLAG = "--litert-threads"\n',
    ],
)
def test_the_backend_name_check_catches_a_planted_line(tmp_path: Path, planted: str) -> None:
    shutil.copytree(PACKAGE, tmp_path / "edgekit", ignore=shutil.ignore_patterns("__pycache__"))
    assert backend_names_in_generic_code(tmp_path / "edgekit") == []
    target = tmp_path / "edgekit" / "pipeline" / "bench.py"
    target.write_text(target.read_text(encoding="utf-8") + "\n" + planted, encoding="utf-8")
    found = backend_names_in_generic_code(tmp_path / "edgekit")
    assert len(found) == 1 and found[0].startswith("edgekit.pipeline.bench:"), found


def test_import_linter_rejects_an_upward_import(tmp_path: Path) -> None:
    """The contracts in `make lint` fail on a violation: core importing the CLI, inside a function."""
    shutil.copytree(PACKAGE, tmp_path / "edgekit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "edgekit" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _sneaky() -> None:\n    from edgekit.cli import main  # noqa\n")
    linter = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [str(linter), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert "edgekit.core is not allowed to import edgekit.cli" in result.stdout
    clean = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stdout


BLOCKER = textwrap.dedent(
    """
    import sys
    BLOCKED = {"torch", "torchvision", "torch_pruning", "nncf", "onnx", "matplotlib"}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())
    """
)


@pytest.mark.usefixtures("bundle")
def test_run_side_needs_none_of_the_workstation_libraries(
    bundle: Path, data_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """Load, predict and bench an ONNX Runtime bundle with torch, torchvision, torch_pruning, NNCF, onnx and
    matplotlib unimportable: the device side must not need them (bench skips the PyTorch reference)."""
    image = next(p for p in (data_dirs["val"]).rglob("*.png"))
    script = BLOCKER + textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        import edgekit
        from edgekit.cli.main import main

        model = edgekit.load({str(bundle)!r})
        prediction = model.predict([{str(image)!r}])[0]
        assert prediction.label in model.class_names, prediction
        try:
            main(["bench", {str(bundle)!r}, "--iterations", "3", "--batch-sizes", "1",
                  "--out", {str(tmp_path / "bench")!r}, "--json"])
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        results = json.loads(Path({str(tmp_path / "bench" / "bench.json")!r}).read_text())
        assert results["reference"] is None
        assert any("torch is not installed" in note for note in results["notes"]), results["notes"]
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        print("OK", prediction.label)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("OK ")


@pytest.mark.parametrize("script", sorted(p.relative_to(ROOT) for p in (ROOT / "benchmarks").rglob("*.py")), ids=str)
def test_benchmark_scripts_import_against_this_layout(script: Path) -> None:
    """Benchmarks are run by hand, rarely: a name they import that moved must fail here, not on the day a
    GPU is lent. Importing runs nothing (each script's work is under `if __name__ == "__main__"`). The
    script's folder leads sys.path, as `python benchmarks/x.py` puts it (a benchmark may import another's helpers)."""
    path = ROOT / script
    code = f"import runpy, sys; sys.path.insert(0, {str(path.parent)!r}); runpy.run_path({str(path)!r}, run_name='x')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]


def test_backend_options_are_declared_once_in_the_backends_folder() -> None:
    """The CLI finds options in each backend folder's options.py (without importing a runtime); the run half
    carries the same declaration, so `edgekit.load` and a device run take exactly what the CLI offers."""
    from edgekit.backends.option import declared_options
    from edgekit.backends.registry import RUNTIMES

    for stage in ("run", "build"):
        by_runtime = [option for backend in RUNTIMES.values() for option in backend.options if option.stage == stage]
        assert sorted(o.name for o in declared_options(stage)) == sorted(o.name for o in by_runtime)
    flags = [option.flag.split("/")[0] for stage in ("run", "build") for option in declared_options(stage)]
    assert len(flags) == len(set(flags)), "two backends declare the same flag"
