"""Check edgekit's use of TensorRT against TensorRT's published Python API, without TensorRT.

`trt_api.json` is the API of real releases (8.6, 10.3, newest 10.x, newest 11.x), extracted from the
pybind11 sources of NVIDIA/TensorRT by `scripts/extract_trt_api.py`. This module reads the backend's
source and checks every `trt.Name`, `trt.Enum.MEMBER` and every attribute used on a TensorRT object
against each version, so a misspelled, renamed or removed symbol fails CI rather than a user's build.

TensorRT objects are recognised by name: the backend keeps each in a variable named after it
(`builder`, `config`, `engine`, … or `self._engine`; see OBJECTS). A line marked `# trt-api: legacy`
is a TensorRT 8.x path (bindings API, max_workspace_size) and is checked against 8.6 only. Names that
are chosen at run time (builder flags from `recipe.plan_build`) are checked by running the planner
for every version (tests/test_tensorrt_api.py).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

OBJECTS = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "config": "IBuilderConfig",
    "profile": "IOptimizationProfile",
    "cache": "ITimingCache",
    "runtime": "Runtime",
    "engine": "ICudaEngine",
    "inspector": "EngineInspector",
    "layer": "ILayer",
    "context": "IExecutionContext",
    "logger": "Logger",
}
CHECKED_MODULES = ("trt_builder.py", "engine_runner.py")  # the only files that call TensorRT
LEGACY_MARK = "# trt-api: legacy"
LEGACY_VERSIONS = ("8.6.1",)


@dataclasses.dataclass(frozen=True)
class Violation:
    file: str
    line: int
    symbol: str
    versions: tuple[str, ...]  # versions whose API lacks it

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.symbol} is not in TensorRT {', '.join(self.versions)}"


@functools.cache
def published_api() -> dict[str, Any]:
    """{version: {"module": [...], "members": {class: [...]}, "aliases": {...}}} of real TensorRT releases."""
    text = resources.files("edgekit.backends.tensorrt").joinpath("trt_api.json").read_text(encoding="utf-8")
    return json.loads(text)["versions"]


def has_symbol(version: str, owner: str | None, name: str) -> bool:
    """Whether `tensorrt.<name>` (owner None) or `tensorrt.<owner>` has `name` in that release."""
    api = published_api()[version]
    if owner is None:
        return name in api["module"]
    owner = api.get("aliases", {}).get(owner, owner)
    return name in api["members"].get(owner, ())


def _dotted(node: ast.AST) -> list[str] | None:
    """`trt.BuilderFlag.FP16` → ["trt", "BuilderFlag", "FP16"]; `self._engine.x` → ["engine", "x"]."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    parts.reverse()
    if parts[0] == "self" and len(parts) > 2:
        parts = [parts[1].lstrip("_"), *parts[2:]]
    return parts


def _mark_parents(tree: ast.AST) -> None:
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            child.parent = parent  # type: ignore[attr-defined]


def check_source(source: str, file: str, versions: tuple[str, ...] | None = None) -> list[Violation]:
    """Violations of one module's source against the given (default: all recorded) versions."""
    versions = versions or tuple(published_api())
    lines = source.splitlines()
    tree = ast.parse(source)
    _mark_parents(tree)
    violations = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or isinstance(getattr(node, "parent", None), ast.Attribute):
            continue
        parts = _dotted(node)
        if not parts or len(parts) < 2 or (parts[0] != "trt" and parts[0] not in OBJECTS):
            continue
        if parts[0] == "trt":
            checks = [(None, parts[1])]
            checks += [(".".join(parts[1:i]), parts[i]) for i in range(2, len(parts))]
        else:
            checks = [(OBJECTS[parts[0]], parts[1])]
        legacy = LEGACY_MARK in lines[node.lineno - 1]
        applicable = LEGACY_VERSIONS if legacy else versions
        for owner, name in checks:
            missing = tuple(v for v in applicable if not has_symbol(v, owner, name))
            if missing:
                symbol = f"trt.{owner + '.' if owner else ''}{name}" if parts[0] == "trt" else f"{owner}.{name}"
                violations.append(Violation(file, node.lineno, symbol, missing))
    return violations


def check_backend(directory: Path | None = None) -> list[Violation]:
    """Violations in the backend's TensorRT-calling modules (empty when every symbol exists)."""
    directory = directory or Path(__file__).parent
    violations = []
    for name in CHECKED_MODULES:
        violations += check_source((directory / name).read_text(encoding="utf-8"), name)
    return violations
