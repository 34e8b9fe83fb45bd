"""Extract TensorRT's published Python API surface from its pybind11 sources.

TensorRT cannot be installed everywhere (it needs an NVIDIA GPU and driver), so edgekit checks
its use of the ``tensorrt`` Python module against a vendored description of that module
(``edgekit/backends/trt_api.json``).  This script regenerates that file from the open-source
TensorRT repository (https://github.com/NVIDIA/TensorRT), whose ``python/`` folder holds the
pybind11 binding sources of the ``tensorrt`` wheel plus the Python-side ``__init__.py``.

The sources are not compiled: regular expressions and a small bracket-matching scanner read the
``py::class_`` / ``py::enum_`` / ``py::bind_vector`` declarations with their chained
``.def*`` / ``.value`` calls, ``m.def`` / ``m.attr`` / ``m.add_object`` module attributes, and the
few ``#if`` blocks (evaluated with the defines of the full ``tensorrt`` module).  The Python-side
``__init__.py`` is parsed with :mod:`ast` for module functions (``volume``, ``nptype``), attributes
(``__version__``) and attributes patched onto bound classes (``Logger.Severity``, ``DataType.itemsize``).

Run it against a clone (or bare mirror) of NVIDIA/TensorRT::

    # newest 8.x tag, newest 10.3.x tag, newest 10.x tag and newest tag of each later major
    python scripts/extract_trt_api.py --git-dir /path/to/TensorRT/.git --auto \\
        -o edgekit/backends/trt_api.json

    # explicit revisions (tags, branches or commits); the JSON key is read from NvInferVersion.h
    python scripts/extract_trt_api.py --git-dir /path/to/TensorRT/.git \\
        --rev v8.6.1 --rev v10.3.0 --rev v10.16 --rev v11.1 -o edgekit/backends/trt_api.json

    # a checked-out work tree (revision recorded from ``git rev-parse HEAD`` when possible)
    python scripts/extract_trt_api.py --tree /path/to/TensorRT -o /tmp/trt_api.json

In the output, ``members`` lists every attribute reachable on a class or enum from Python:
the names bound on it, the members inherited from bound base classes (listed in ``bases``),
the members of nested enums exported with ``export_values()``, and, for enums, pybind11's
implicit ``name``, ``value`` and ``__members__``.  Nested types are keyed by their dotted path
(``ILogger.Severity``).  Names that the scanner could not resolve are reported on stderr and
stored under ``unresolved``.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Defines that hold when the full ``tensorrt`` module (not tensorrt_lean / tensorrt_dispatch) is built
# on Linux with a current pybind11.  Identifiers missing here count as undefined (0).
DEFAULT_DEFINES: dict[str, int] = {
    "EXPORT_ALL_BINDINGS": 1,
    "PYBIND11_VERSION_MAJOR": 2,
    "PYBIND11_VERSION_MINOR": 13,
    "PYBIND11_VERSION_PATCH": 0,
    "__linux__": 1,
    "__GLIBC__": 1,
}

INIT_PY_CANDIDATES = (
    "python/packaging/bindings_wheel/tensorrt/__init__.py",
    "python/packaging/tensorrt/__init__.py",
    "python/tensorrt/__init__.py",
)
VERSION_HEADER = "include/NvInferVersion.h"
BINDINGS_DIR = "python/src/"

# Members pybind11 adds by itself.
ENUM_IMPLICIT_MEMBERS = ("__members__", "name", "value")
BIND_VECTOR_MEMBERS = (
    "__bool__",
    "__delitem__",
    "__getitem__",
    "__init__",
    "__iter__",
    "__len__",
    "__setitem__",
    "append",
    "clear",
    "extend",
    "insert",
    "pop",
)
BIND_MAP_MEMBERS = (
    "__bool__",
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__init__",
    "__iter__",
    "__len__",
    "__setitem__",
    "items",
    "keys",
    "values",
)
MEMBER_DEFINING_CALLS = frozenset(
    {
        "def",
        "def_static",
        "def_property",
        "def_property_readonly",
        "def_property_static",
        "def_property_readonly_static",
        "def_readwrite",
        "def_readonly",
        "def_readwrite_static",
        "def_readonly_static",
    }
)
STRIPPED_NAMESPACES = ("nvinfer1::", "nvonnxparser::", "nvuffparser::", "nvcaffeparser1::", "tensorrt::", "py::")

IDENT_RE = re.compile(r"[A-Za-z_]\w*")
STRING_RE = re.compile(r'^"((?:[^"\\]|\\.)*)"$', re.DOTALL)
RAW_STRING_RE = re.compile(r'(?<![\w])(?:u8|u|U|L)?R"([^()\\\s]{0,16})\(')
BINDING_START_RE = re.compile(r"\bpy::(class_|enum_|bind_vector|bind_map)\s*<")
VAR_CALL_RE = re.compile(r"(?<![\w.:>])([A-Za-z_]\w*)\s*\.\s*(def\w*|value|export_values|attr|add_object)\s*\(")
MODULE_PARAM_RE = re.compile(r"\bpy::module_?\s*&\s*([A-Za-z_]\w*)")
PYBIND11_MODULE_RE = re.compile(r"\bPYBIND11_MODULE\s*\(\s*\w+\s*,\s*([A-Za-z_]\w*)\s*\)")
BIND_FUNC_DEF_RE = re.compile(r"\bvoid\s+(bind\w+)\s*\(\s*py::module_?\s*&")
BIND_FUNC_CALL_RE = re.compile(r"\b(bind\w+)\s*\(\s*[A-Za-z_]\w*\s*\)\s*;")
# Wrappers that make a binding emit a DeprecationWarning (the *InTrtRtxOnly variants only do so in TensorRT-RTX).
DEPRECATION_RE = re.compile(r"\butils::deprecate(?:Member)?\s*\(")
ASSIGN_BEFORE_RE = re.compile(r"([A-Za-z_]\w*)\s*=\s*$")
DEFINE_RE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+(.+?)[ \t]*$", re.MULTILINE)


# --------------------------------------------------------------------------------------------
# Source access
# --------------------------------------------------------------------------------------------


class Source:
    """Read-only access to the files of one TensorRT revision."""

    revision: str

    def list_files(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def read(self, path: str) -> str | None:
        raise NotImplementedError


class GitSource(Source):
    """Files of ``rev`` in a git directory (bare or not), read with ``git show``."""

    def __init__(self, git_dir: Path, rev: str) -> None:
        self.git_dir = git_dir
        self.rev = rev
        sha = self._git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
        self.revision = sha if sha.startswith(rev) else f"{rev} ({sha})"
        listing = self._git("ls-tree", "-r", "--name-only", sha, "--", "python", "include")
        self._files = listing.splitlines()
        self._sha = sha

    def _git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args], check=True, capture_output=True, text=True, errors="replace"
        )
        return result.stdout

    def list_files(self, prefix: str) -> list[str]:
        return sorted(f for f in self._files if f.startswith(prefix))

    def read(self, path: str) -> str | None:
        if path not in self._files:
            return None
        return self._git("show", f"{self._sha}:{path}")


class TreeSource(Source):
    """Files of a checked-out TensorRT work tree."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.revision = f"worktree {root}"
        try:
            top, sha = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
        except (OSError, ValueError, subprocess.CalledProcessError):
            return
        if Path(top).resolve() == root.resolve():
            self.revision = f"worktree {root} at {sha}"

    def list_files(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def read(self, path: str) -> str | None:
        file = self.root / path
        return file.read_text(errors="replace") if file.is_file() else None


# --------------------------------------------------------------------------------------------
# C++ lexing helpers
# --------------------------------------------------------------------------------------------


def skip_quoted(text: str, i: int) -> int:
    """Return the index just past the string or char literal starting at ``text[i]``."""
    quote = text[i]
    j = i + 1
    n = len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == quote or c == "\n":
            return j + 1
        j += 1
    return n


def skip_literal(text: str, i: int) -> int | None:
    """If a string/char literal starts at ``i``, return the index past it, else ``None``."""
    c = text[i]
    if c == '"':
        return skip_quoted(text, i)
    if c == "'":
        # A quote between digits is a digit separator (1'000), not a char literal.
        if i > 0 and text[i - 1].isdigit() and i + 1 < len(text) and text[i + 1].isdigit():
            return None
        return skip_quoted(text, i)
    if c in "uULR":
        m = RAW_STRING_RE.match(text, i)
        if m:
            end = text.find(f'){m.group(1)}"', m.end())
            return len(text) if end < 0 else end + len(m.group(1)) + 2
    return None


def strip_comments(text: str) -> str:
    """Remove // and /* */ comments, keeping literals and line numbers intact."""
    out: list[str] = []
    i = 0
    n = len(text)
    start = 0
    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] in "/*":
            out.append(text[start:i])
            if text[i + 1] == "/":
                end = text.find("\n", i)
                i = n if end < 0 else end
            else:
                end = text.find("*/", i + 2)
                end = n if end < 0 else end + 2
                out.append("\n" * text.count("\n", i, end) or " ")
                i = end
            start = i
            continue
        if c in "\"'uULR":
            literal_end = skip_literal(text, i)
            if literal_end is not None:
                i = literal_end
                continue
        i += 1
    out.append(text[start:])
    return "".join(out)


def eval_condition(expr: str, defines: dict[str, int]) -> bool:
    """Evaluate a preprocessor ``#if`` expression; unknown identifiers are 0."""
    expr = re.sub(r"\bdefined\s*\(\s*(\w+)\s*\)", lambda m: "1" if m.group(1) in defines else "0", expr)
    expr = re.sub(r"\bdefined\s+(\w+)", lambda m: "1" if m.group(1) in defines else "0", expr)
    expr = re.sub(r"\b(\d+)[uUlL]+\b", r"\1", expr)
    expr = expr.replace("&&", " and ").replace("||", " or ")
    expr = re.sub(r"!(?!=)", " not ", expr)
    expr = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: _identifier_value(m.group(0), defines), expr)
    try:
        return bool(_eval_node(ast.parse(expr.strip(), mode="eval").body))
    except (SyntaxError, ValueError):
        print(f"warning: cannot evaluate #if {expr!r}; assuming false", file=sys.stderr)
        return False


def _identifier_value(name: str, defines: dict[str, int]) -> str:
    if name in ("and", "or", "not"):
        return name
    return str(defines.get(name, 0))


def _eval_node(node: ast.expr) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return int(node.value)
    if isinstance(node, ast.BoolOp):
        values = [_eval_node(v) for v in node.values]
        return int(all(values)) if isinstance(node.op, ast.And) else int(any(values))
    if isinstance(node, ast.UnaryOp):
        operand = _eval_node(node.operand)
        if isinstance(node.op, ast.Not):
            return int(not operand)
        if isinstance(node.op, ast.USub):
            return -operand
    if isinstance(node, ast.BinOp):
        left, right = _eval_node(node.left), _eval_node(node.right)
        ops = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}
        for op_type, result in ops.items():
            if isinstance(node.op, op_type):
                return result
    if isinstance(node, ast.Compare):
        left = _eval_node(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval_node(comparator)
            checks = {
                ast.Lt: left < right,
                ast.LtE: left <= right,
                ast.Gt: left > right,
                ast.GtE: left >= right,
                ast.Eq: left == right,
                ast.NotEq: left != right,
            }
            if not next(result for op_type, result in checks.items() if isinstance(op, op_type)):
                return 0
            left = right
        return 1
    raise ValueError(f"unsupported #if expression node {ast.dump(node)}")


def preprocess(text: str, defines: dict[str, int]) -> str:
    """Drop comments, preprocessor directives and inactive ``#if`` branches (line numbers kept)."""
    defines = dict(defines)
    lines = strip_comments(text).split("\n")
    out: list[str] = []
    # Each frame: (parent active, some branch already taken, this branch active)
    stack: list[tuple[bool, bool, bool]] = []
    active = True
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped.startswith("#"):
            out.append(line if active else "")
            i += 1
            continue
        directive = stripped
        count = 1
        while directive.endswith("\\") and i + count < len(lines):
            directive = directive[:-1] + " " + lines[i + count].strip()
            count += 1
        out.extend([""] * count)
        i += count
        m = re.match(r"#\s*(\w+)\s*(.*)$", directive)
        if not m:
            continue
        kind, rest = m.group(1), m.group(2).strip()
        if kind in ("if", "ifdef", "ifndef"):
            if kind == "if":
                cond = eval_condition(rest, defines)
            elif kind == "ifdef":
                cond = rest.split()[0] in defines
            else:
                cond = rest.split()[0] not in defines
            taken = active and cond
            stack.append((active, taken, taken))
            active = taken
        elif kind == "elif" and stack:
            parent, any_taken, _ = stack[-1]
            taken = parent and not any_taken and eval_condition(rest, defines)
            stack[-1] = (parent, any_taken or taken, taken)
            active = taken
        elif kind == "else" and stack:
            parent, any_taken, _ = stack[-1]
            taken = parent and not any_taken
            stack[-1] = (parent, True, taken)
            active = taken
        elif kind == "endif" and stack:
            active = stack.pop()[0]
        elif kind == "define" and active:
            dm = re.match(r"([A-Za-z_]\w*)\s+(\d+)\s*$", rest)
            if dm:
                defines[dm.group(1)] = int(dm.group(2))
            elif re.match(r"[A-Za-z_]\w*\s*$", rest):
                defines[rest] = 1
        elif kind == "undef" and active:
            defines.pop(rest.split()[0] if rest else "", None)
    return "\n".join(out)


def match_bracket(text: str, i: int) -> int:
    """``text[i]`` is one of ``([{``; return the index just past its matching closer."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack: list[str] = []
    n = len(text)
    j = i
    while j < n:
        c = text[j]
        if c in "\"'uULR":
            end = skip_literal(text, j)
            if end is not None:
                j = end
                continue
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if not stack or stack.pop() != c:
                raise ValueError(f"unbalanced {c!r} at offset {j}")
            if not stack:
                return j + 1
        j += 1
    raise ValueError(f"unterminated bracket opened at offset {i}")


def match_angle(text: str, i: int) -> int:
    """``text[i]`` is ``<`` opening a template argument list; return the index past its ``>``."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
            if depth == 0:
                return j + 1
        elif c in ";{":
            break
    raise ValueError(f"unterminated template argument list at offset {i}")


def split_args(text: str, angle: bool = False) -> list[str]:
    """Split an argument list at top-level commas (``angle``: also treat ``<>`` as brackets)."""
    args: list[str] = []
    depth = 0
    start = 0
    j = 0
    n = len(text)
    openers = "([{<" if angle else "([{"
    closers = ")]}>" if angle else ")]}"
    while j < n:
        c = text[j]
        if c in "\"'uULR":
            end = skip_literal(text, j)
            if end is not None:
                j = end
                continue
        if c in openers:
            depth += 1
        elif c in closers:
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[start:j].strip())
            start = j + 1
        j += 1
    tail = text[start:].strip()
    if tail or args:
        args.append(tail)
    return args


def skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    return i


def string_literal(arg: str) -> str | None:
    m = STRING_RE.match(arg.strip())
    return m.group(1) if m else None


def normalize_type(cpp_type: str) -> str:
    t = re.sub(r"\b(const|struct|class|typename)\b", "", cpp_type)
    t = re.sub(r"\s+", "", t).lstrip(":")
    for ns in STRIPPED_NAMESPACES:
        t = t.replace(ns, "")
    return t.rstrip("&*")


@dataclass
class Call:
    """One chained call such as ``.def("name", ...)``."""

    method: str
    args: list[str]
    offset: int
    after: int  # index just past the closing parenthesis


def parse_chain(text: str, i: int) -> tuple[list[Call], int]:
    """Parse ``.method(args)`` calls chained from index ``i``; return them and the end index."""
    calls: list[Call] = []
    while True:
        j = skip_ws(text, i)
        if j >= len(text) or text[j] != ".":
            return calls, j
        m = IDENT_RE.match(text, skip_ws(text, j + 1))
        if not m:
            return calls, j
        k = skip_ws(text, m.end())
        if k >= len(text) or text[k] != "(":
            return calls, j
        end = match_bracket(text, k)
        calls.append(Call(m.group(0), split_args(text[k + 1 : end - 1]), j, end))
        i = end


OPERATOR_NAMES = {
    "==": "__eq__",
    "!=": "__ne__",
    "<": "__lt__",
    "<=": "__le__",
    ">": "__gt__",
    ">=": "__ge__",
    "+": "__add__",
    "-": "__sub__",
    "*": "__mul__",
    "/": "__truediv__",
    "+=": "__iadd__",
    "-=": "__isub__",
    "*=": "__imul__",
    "&": "__and__",
    "|": "__or__",
    "^": "__xor__",
}


def member_names(first_arg: str) -> list[str] | None:
    """Python attribute name(s) that a ``.def(first_arg, ...)`` call binds, or ``None``."""
    name = string_literal(first_arg)
    if name is not None:
        return [name]
    arg = re.sub(r"\s+", " ", first_arg.strip())
    if re.match(r"py::init(_alias)?\b", arg):
        return ["__init__"]
    if arg.startswith("py::pickle"):
        return ["__getstate__", "__setstate__"]
    if re.match(r"(py::)?hash\s*\(\s*py::self\s*\)$", arg):
        return ["__hash__"]
    m = re.match(r"py::self\s*([=!<>+\-*/&|^]{1,2})\s*\S+$", arg) or re.match(
        r"\S+\s*([=!<>+\-*/&|^]{1,2})\s*py::self$", arg
    )
    if m and m.group(1) in OPERATOR_NAMES:
        return [OPERATOR_NAMES[m.group(1)]]
    return None


# --------------------------------------------------------------------------------------------
# The API model
# --------------------------------------------------------------------------------------------


@dataclass
class BoundType:
    """A class or enum bound with pybind11."""

    path: str  # dotted Python path below the module, e.g. "ILogger.Severity"
    cpp_type: str
    kind: str  # "class", "enum", "vector" or "map"
    template_args: list[str]
    members: set[str] = field(default_factory=set)
    values: set[str] = field(default_factory=set)
    deprecated: set[str] = field(default_factory=set)
    bases: list[str] = field(default_factory=list)
    exported: bool = False


@dataclass
class Api:
    """The Python-visible surface of one TensorRT revision."""

    module: set[str] = field(default_factory=set)
    types: dict[str, BoundType] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # dotted path -> dotted path of a bound type
    submodules: set[str] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)

    def add_member(self, owner: str | None, name: str) -> None:
        if owner is None:
            self.module.add(name)
        elif owner in self.types:
            self.types[owner].members.add(name)
        else:
            self.unresolved.append(f"member {name!r} of unknown owner {owner!r}")


class BindingScanner:
    """Collects pybind11 bindings from preprocessed C++ translation units."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.module_vars: set[str] = {"m"}
        self.class_vars: dict[str, str] = {}  # C++ variable holding a py::class_ -> Python path
        self.cpp_to_path: dict[str, str] = {}

    def scan(self, name: str, text: str) -> None:
        self.module_vars.update(MODULE_PARAM_RE.findall(text))
        self.module_vars.update(PYBIND11_MODULE_RE.findall(text))
        for m in BINDING_START_RE.finditer(text):
            try:
                self._binding(name, text, m)
            except ValueError as exc:
                self.api.unresolved.append(f"{name}:{line_of(text, m.start())}: {exc}")
        for m in VAR_CALL_RE.finditer(text):
            var = m.group(1)
            if var in self.module_vars or var in self.class_vars:
                try:
                    self._var_chain(name, text, m, var)
                except ValueError as exc:
                    self.api.unresolved.append(f"{name}:{line_of(text, m.start())}: {exc}")

    def _scope(self, expr: str, where: str) -> tuple[bool, str | None]:
        """Resolve the scope argument of a binding: (known, owning type path or None for the module)."""
        expr = expr.strip().lstrip("*&")
        if expr in self.module_vars:
            return True, None
        if expr in self.class_vars:
            return True, self.class_vars[expr]
        self.api.unresolved.append(f"{where}: unknown scope {expr!r}")
        return False, None

    def _binding(self, name: str, text: str, m: re.Match[str]) -> None:
        kind = {"class_": "class", "enum_": "enum", "bind_vector": "vector", "bind_map": "map"}[m.group(1)]
        lt = m.end() - 1
        gt = match_angle(text, lt)
        template_args = split_args(text[lt + 1 : gt - 1], angle=True)
        j = skip_ws(text, gt)
        var: str | None = None
        ident = IDENT_RE.match(text, j)
        if ident:
            var = ident.group(0)
            j = skip_ws(text, ident.end())
        if j >= len(text) or text[j] not in "({":
            return  # a type mention such as a function parameter, not a binding
        end = match_bracket(text, j)
        args = split_args(text[j + 1 : end - 1])
        where = f"{name}:{line_of(text, m.start())}"
        if len(args) < 2:
            self.api.unresolved.append(f"{where}: binding without a name: {text[m.start() : end]!r}")
            return
        known, owner = self._scope(args[0], where)
        py_name = string_literal(args[1])
        if py_name is None or not known:
            self.api.unresolved.append(f"{where}: cannot resolve binding name {args[1]!r}")
            return
        path = f"{owner}.{py_name}" if owner else py_name
        bound = BoundType(path, normalize_type(template_args[0]), kind, template_args)
        if kind == "vector":
            bound.members.update(BIND_VECTOR_MEMBERS)
        elif kind == "map":
            bound.members.update(BIND_MAP_MEMBERS)
        self.api.types[path] = bound
        self.cpp_to_path.setdefault(bound.cpp_type, path)
        self.api.add_member(owner, py_name)
        if var is None:
            before = ASSIGN_BEFORE_RE.search(text, max(0, m.start() - 200), m.start())
            if before:
                var = before.group(1)
        if var is not None:
            self.class_vars[var] = path
        calls, _ = parse_chain(text, end)
        self._apply(bound, calls, where)

    def _apply(self, bound: BoundType, calls: Iterable[Call], where: str) -> None:
        for call in calls:
            if call.method in MEMBER_DEFINING_CALLS:
                names = member_names(call.args[0]) if call.args else None
                if names is None:
                    self.api.unresolved.append(f"{where}: {bound.path}.{call.method}({call.args[:1]})")
                    continue
                bound.members.update(names)
                if any(DEPRECATION_RE.search(arg) for arg in call.args[1:]):
                    bound.deprecated.update(names)
            elif call.method == "value":
                value = string_literal(call.args[0]) if call.args else None
                if value is None:
                    self.api.unresolved.append(f"{where}: {bound.path}.value({call.args[:1]})")
                    continue
                bound.values.add(value)
            elif call.method == "export_values":
                bound.exported = True

    def _var_chain(self, name: str, text: str, m: re.Match[str], var: str) -> None:
        where = f"{name}:{line_of(text, m.start())}"
        calls, end = parse_chain(text, m.end(1))
        if var in self.class_vars:
            bound = self.api.types[self.class_vars[var]]
            self._apply(bound, calls, where)
            owner: str | None = bound.path
        else:
            owner = None
            for call in calls:
                if call.method in ("def", "def_static") and call.args:
                    func = string_literal(call.args[0])
                    if func is None:
                        self.api.unresolved.append(f"{where}: module function {call.args[0]!r}")
                    else:
                        self.api.module.add(func)
                elif call.method == "add_object" and call.args:
                    attr = string_literal(call.args[0])
                    if attr is not None:
                        self.api.module.add(attr)
        if not calls or calls[-1].method != "attr" or not calls[-1].args:
            return
        attr = string_literal(calls[-1].args[0])
        j = skip_ws(text, end)
        if attr is None or not text.startswith("=", j) or text.startswith("==", j):
            return
        self.api.add_member(owner, attr)
        semi = text.find(";", j)
        rhs = re.sub(r"\s+", "", text[j + 1 : semi])
        alias = re.fullmatch(r"([A-Za-z_]\w*)\.attr\(\"(\w+)\"\)", rhs)
        if alias and alias.group(1) in self.module_vars:
            target = f"{owner}.{attr}" if owner else attr
            self.api.aliases[target] = alias.group(2)

    def resolve_bases(self) -> None:
        for bound in self.api.types.values():
            for arg in bound.template_args[1:]:
                path = self.cpp_to_path.get(normalize_type(arg))
                if path is not None and path != bound.path:
                    bound.bases.append(path)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# --------------------------------------------------------------------------------------------
# Python side (__init__.py)
# --------------------------------------------------------------------------------------------


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _static_test(test: ast.expr) -> bool | None:
    """Decide an ``if`` test of the wheel's __init__.py where it is static; None if unknown."""
    if "sys.platform" in ast.unparse(test):
        return False  # Windows-only DLL loading
    if isinstance(test, ast.BoolOp):
        parts = [_static_test(v) for v in test.values]
        if any(p is None for p in parts):
            return None
        return all(parts) if isinstance(test.op, ast.And) else any(parts)
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, right = test.left, test.comparators[0]
        if isinstance(left, ast.Constant) and isinstance(right, ast.Constant):
            if isinstance(test.ops[0], ast.Eq):
                return bool(left.value == right.value)
            if isinstance(test.ops[0], ast.NotEq):
                return bool(left.value != right.value)
    return None


def apply_init_py(api: Api, source_text: str, module_name: str = "tensorrt") -> None:
    """Add what the wheel's ``__init__.py`` defines or patches onto the bound module."""
    text = source_text.replace("##TENSORRT_MODULE##", module_name)
    text = re.sub(r"##\w+##", "__placeholder__", text)
    tree = ast.parse(text)
    imported: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.If):
                decided = _static_test(stmt.test)
                if decided is None:
                    visit(stmt.body)
                    visit(stmt.orelse)
                else:
                    visit(stmt.body if decided else stmt.orelse)
            elif isinstance(stmt, ast.Try):
                visit(stmt.body)
                visit(stmt.orelse)
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                for alias in stmt.names:
                    if alias.name != "*":
                        imported.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(stmt, ast.FunctionDef | ast.ClassDef):
                api.module.add(stmt.name)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    _assign(api, target, stmt.value)
            elif isinstance(stmt, ast.Delete):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        api.module.discard(target.id)
            elif isinstance(stmt, ast.For):
                _setattr_loop(api, stmt)

    visit(tree.body)
    api.module.difference_update(imported - {"tensorrt"})


def _assign(api: Api, target: ast.expr, value: ast.expr | None) -> None:
    if isinstance(target, ast.Name):
        api.module.add(target.id)
        return
    if not isinstance(target, ast.Attribute):
        return
    owner = _dotted(target.value)
    if owner is None:
        return
    owner = api.aliases.get(owner, owner)
    api.add_member(owner, target.attr)
    source = _dotted(value) if value is not None else None
    if source is not None:
        source = api.aliases.get(source, source)
        if source in api.types:
            api.aliases[f"{owner}.{target.attr}"] = source


def _setattr_loop(api: Api, loop: ast.For) -> None:
    """``for attr, value in Enum.__members__.items(): setattr(Cls, attr, value)``."""
    it = loop.iter
    if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr == "items"):
        return
    members_of = it.func.value
    if not (isinstance(members_of, ast.Attribute) and members_of.attr == "__members__"):
        return
    enum_path = _dotted(members_of.value)
    enum_path = api.aliases.get(enum_path or "", enum_path or "")
    if enum_path not in api.types:
        return
    for stmt in loop.body:
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id == "setattr"
            and stmt.value.args
        ):
            owner = _dotted(stmt.value.args[0])
            if owner is not None:
                for value in api.types[enum_path].values:
                    api.add_member(api.aliases.get(owner, owner), value)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def read_version(source: Source) -> str:
    header = source.read(VERSION_HEADER)
    if header is None:
        raise SystemExit(f"{source.revision}: {VERSION_HEADER} not found")
    defines: dict[str, str] = {name: value.split("//")[0].strip() for name, value in DEFINE_RE.findall(header)}

    def resolve(name: str) -> str:
        value = defines.get(name, "?")
        for _ in range(8):
            if value in defines:
                value = defines[value]
        return value

    return ".".join(resolve(f"NV_TENSORRT_{part}") for part in ("MAJOR", "MINOR", "PATCH"))


def extract(source: Source, defines: dict[str, int]) -> dict[str, object]:
    api = Api()
    scanner = BindingScanner(api)
    units: dict[str, str] = {}
    for path in source.list_files(BINDINGS_DIR):
        if path.endswith((".cpp", ".cc", ".cxx")):
            text = source.read(path)
            if text is not None:
                units[path] = preprocess(text, defines)

    # Only translation units whose bind*() function the module initializer calls are part of the module.
    called: set[str] = set()
    for text in units.values():
        init = PYBIND11_MODULE_RE.search(text)
        if init:
            called.update(BIND_FUNC_CALL_RE.findall(text[init.end() :]))
    for path, text in units.items():
        defined = set(BIND_FUNC_DEF_RE.findall(text))
        if called and defined and not defined & called:
            print(f"{source.revision}: skipping {path} ({', '.join(sorted(defined))} not called)", file=sys.stderr)
            continue
        scanner.scan(path, text)
    scanner.resolve_bases()

    for bound in api.types.values():
        if bound.kind == "enum":
            bound.members.update(ENUM_IMPLICIT_MEMBERS)
            bound.members.update(bound.values)
            if bound.exported:
                owner = bound.path.rpartition(".")[0] or None
                for value in bound.values:
                    api.add_member(owner, value)

    for target, origin in list(api.aliases.items()):
        if origin not in api.types:
            del api.aliases[target]

    init_py = next((p for p in INIT_PY_CANDIDATES if source.read(p) is not None), None)
    if init_py is None:
        api.unresolved.append("no tensorrt/__init__.py found")
    else:
        apply_init_py(api, source.read(init_py) or "")
        package = init_py.rpartition("/")[0] + "/"
        for path in source.list_files(package):
            rest = path[len(package) :]
            if rest.count("/") == 1 and rest.endswith("/__init__.py"):
                api.submodules.add(rest.split("/")[0])

    members: dict[str, list[str]] = {}
    bases: dict[str, list[str]] = {}
    deprecated: dict[str, list[str]] = {}

    def reachable(path: str, seen: frozenset[str] = frozenset()) -> set[str]:
        bound = api.types[path]
        names = set(bound.members)
        for base in bound.bases:
            if base not in seen:
                names |= reachable(base, seen | {path})
        return names

    for path, bound in api.types.items():
        members[path] = sorted(reachable(path))
        if bound.bases:
            bases[path] = sorted(bound.bases)
        if bound.deprecated:
            deprecated[path] = sorted(bound.deprecated)
    for target, origin in api.aliases.items():
        members.setdefault(target, members[origin])

    result: dict[str, object] = {
        "revision": source.revision,
        "module": sorted(api.module),
        "members": dict(sorted(members.items())),
        "bases": dict(sorted(bases.items())),
        "enums": sorted(p for p, b in api.types.items() if b.kind == "enum"),
        "aliases": dict(sorted(api.aliases.items())),
        "deprecated": dict(sorted(deprecated.items())),
        "submodules": sorted(api.submodules),
    }
    if api.unresolved:
        unresolved = sorted(set(api.unresolved))
        result["unresolved"] = unresolved
        for item in unresolved:
            print(f"{source.revision}: unresolved: {item}", file=sys.stderr)
    return result


def auto_revisions(git_dir: Path) -> list[str]:
    """Newest 8.x tag, newest 10.3.x tag, newest 10.x tag and the newest tag of every later major."""
    tags = subprocess.run(
        ["git", f"--git-dir={git_dir}", "tag", "--list", "v*"], check=True, capture_output=True, text=True
    ).stdout.split()
    parsed: list[tuple[tuple[int, ...], str]] = []
    for tag in tags:
        m = re.fullmatch(r"v(\d+)\.(\d+)(?:\.(\d+))?", tag)
        if m:
            parsed.append((tuple(int(g or 0) for g in m.groups()), tag))
    parsed.sort()
    chosen: list[str] = []

    def newest(prefix: tuple[int, ...]) -> None:
        matching = [tag for version, tag in parsed if version[: len(prefix)] == prefix]
        if matching and matching[-1] not in chosen:
            chosen.append(matching[-1])

    newest((8,))
    newest((10, 3))
    for major in sorted({version[0] for version, _ in parsed if version[0] >= 10}):
        newest((major,))
    return chosen


def dump(data: dict[str, object], versions: dict[str, dict[str, object]]) -> str:
    """Compact JSON: one line per version, sorted keys."""
    head = {k: v for k, v in data.items() if k != "versions"}
    lines = ["{"]
    for key, value in head.items():
        lines.append(f"{json.dumps(key)}: {json.dumps(value, sort_keys=True)},")
    lines.append('"versions": {')
    items = list(versions.items())
    for index, (key, value) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        lines.append(f"{json.dumps(key)}: {json.dumps(value, sort_keys=True, separators=(',', ':'))}{comma}")
    lines.append("}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def version_sort_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--git-dir", type=Path, help="git directory of an NVIDIA/TensorRT clone or mirror")
    where.add_argument("--tree", type=Path, help="checked-out NVIDIA/TensorRT work tree")
    parser.add_argument(
        "--rev", action="append", default=[], help="revision to extract (repeatable); optionally KEY=REV"
    )
    parser.add_argument("--auto", action="store_true", help="pick the newest 8.x, 10.3.x, 10.x, 11.x, ... tags")
    parser.add_argument("-o", "--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument(
        "-D", "--define", action="append", default=[], help="extra preprocessor define NAME=VALUE for #if blocks"
    )
    args = parser.parse_args(argv)

    defines = dict(DEFAULT_DEFINES)
    for item in args.define:
        name, _, value = item.partition("=")
        defines[name] = int(value or "1")

    sources: list[tuple[str | None, Source]] = []
    if args.git_dir is not None:
        revs = list(args.rev)
        if args.auto:
            revs.extend(auto_revisions(args.git_dir))
        if not revs:
            parser.error("--git-dir needs --rev and/or --auto")
        for rev in revs:
            key, _, name = rev.rpartition("=")
            sources.append((key or None, GitSource(args.git_dir, name)))
    else:
        sources.append((None, TreeSource(args.tree)))

    versions: dict[str, dict[str, object]] = {}
    for key, source in sources:
        label = key or read_version(source)
        print(f"extracting {label} from {source.revision}", file=sys.stderr)
        versions[label] = extract(source, defines)
    versions = dict(sorted(versions.items(), key=lambda kv: version_sort_key(kv[0])))

    data: dict[str, object] = {
        "source": (
            "Generated by scripts/extract_trt_api.py from the pybind11 binding sources (python/src/**/*.cpp) and "
            "the wheel's python/packaging/bindings_wheel/tensorrt/__init__.py of https://github.com/NVIDIA/TensorRT "
            "at each version's 'revision' (version key from include/NvInferVersion.h). Regex/bracket scan, not a "
            "compile: #if blocks evaluated for the full 'tensorrt' module (EXPORT_ALL_BINDINGS=1, "
            "ENABLE_INETWORK_SERIALIZE undefined, Linux). 'module': names reachable as tensorrt.X (classes, enums, "
            "functions, attributes, ONNX parser included; imports excluded). 'members': attributes reachable on each "
            "class/enum, inherited members (see 'bases') and pybind11's implicit enum name/value/__members__ "
            "included; nested types keyed by dotted path (ILogger.Severity); 'aliases' maps alias paths "
            "(Logger.Severity) to the bound type. 'deprecated': members bound through utils::deprecate/deprecateMember "
            "(they warn when used; deprecations only in the C++ headers are not listed). 'submodules' must be "
            "imported explicitly (import tensorrt.plugin). Regenerate: python scripts/extract_trt_api.py --git-dir "
            "<NVIDIA/TensorRT .git> --auto -o edgekit/backends/trt_api.json"
        ),
        "versions": versions,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(dump(data, versions))
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
