"""The modules of edgekit that a device imports: the import closure of the device-side commands.

A device runs `edgekit predict`, `bench`, `inspect`, `doctor`, `build` and `targets`, and the Python API
`edgekit.load`. Starting from those modules, every `import edgekit...` is followed, including imports
written inside functions, except into the workstation side (compile, prune, fine-tune, export, convert,
report), which a device never runs: its commands are only imported for `--help` (top-level imports).

`make lint` checks exactly these files for Python 3.8 (JetPack 5): vermin for syntax, stdlib and API
minimum versions, ruff's FA102 for annotations evaluated without `from __future__ import annotations`,
and tests/test_architecture.py for generic aliases and `X | Y` unions evaluated at run time.

    python scripts/device_modules.py          # one path per line
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edgekit"

DEVICE_ROOTS = (
    "edgekit",
    "edgekit.cli.main",
    "edgekit.cli.predict_cmd",
    "edgekit.cli.bench_cmd",
    "edgekit.cli.info_cmds",
    "edgekit.cli.build_cmd",
    "edgekit.cli.doctor_cmd",
    "edgekit.pipeline.bench",
    "edgekit.pipeline.device_build",
    "edgekit.pipeline.doctor",
    "edgekit.runtime.model",
    "edgekit.serve.triton_python",  # Triton's Python backend imports it on the device (JetPack 5: Python 3.8)
    "edgekit.runtime.describe",
    "edgekit.backends.registry",
    "edgekit.backends.tensorrt.bundle_engines",
    "edgekit.backends.tensorrt.trtexec",
)
# Never imported on a device (the workstation extra): a device-side import of one is either guarded
# (the PyTorch reference of bench, which needs torch anyway) or a workstation command's body.
WORKSTATION = (
    "edgekit.model",
    "edgekit.optimize",
    "edgekit.export",
    "edgekit.report",
    "edgekit.pipeline.compile",
    "edgekit.pipeline.compile_config",
    "edgekit.pipeline.precision_auto",
    "edgekit.pipeline.sweep",
    "edgekit.pipeline.prune",
    "edgekit.pipeline.quantize_file",
    "edgekit.backends.converters",
    "edgekit.backends.qdq",
    "edgekit.backends.qdq_rules",
    "edgekit.backends.onnxruntime.convert",
    "edgekit.backends.openvino.convert",
    "edgekit.backends.litert.convert",
    "edgekit.backends.litert.onnx_to_torch",
    "edgekit.backends.tensorrt.convert",
    # Exporting for Triton/DeepStream and running tritonserver here; Triton's Python backend imports only
    # edgekit.serve.triton_python on a device (a device root above).
    "edgekit.serve.deepstream",
    "edgekit.serve.triton_repository",
    "edgekit.serve.serve",
    "edgekit.serve.tritonserver",
    "edgekit.serve.output",
)
# Workstation commands: the device imports their modules (for `edgekit --help`), never runs their bodies.
WORKSTATION_COMMANDS = (
    "edgekit.cli.compile_cmd",
    "edgekit.cli.finetune_cmd",
    "edgekit.cli.prune_cmd",
    "edgekit.cli.quantize_cmd",
    "edgekit.cli.report_cmd",
    "edgekit.cli.sweep_cmd",
    "edgekit.cli.serve_cmds",
)


def module_file(name: str) -> Path | None:
    relative = Path(*name.split("."))
    for candidate in (ROOT / relative.with_suffix(".py"), ROOT / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def is_workstation(name: str) -> bool:
    return any(name == w or name.startswith(w + ".") for w in WORKSTATION)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The edgekit modules `path` imports when run: not those under `if TYPE_CHECKING:`, and with
    `top_level_only` not those inside functions."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from edgekit.x import y` may import the module edgekit.x.y
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name == "edgekit" or name.startswith("edgekit.")}


def device_modules() -> dict[str, Path]:
    """Module name → file, for every module the device side imports."""
    seen: dict[str, Path] = {}
    queue = list(DEVICE_ROOTS)
    while queue:
        name = queue.pop()
        if name in seen or is_workstation(name):
            continue
        path = module_file(name)
        if path is None:  # `from edgekit.x import function`: not a module
            continue
        seen[name] = path
        parts = name.split(".")
        queue.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run their __init__
        queue.extend(_imports(path, top_level_only=name in WORKSTATION_COMMANDS))
    return dict(sorted(seen.items()))


def main() -> None:
    for path in device_modules().values():
        print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
