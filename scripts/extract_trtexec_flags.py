"""Extract the command-line flags that ``trtexec`` accepts in each TensorRT release from its C++ sources.

edgekit generates ``trtexec`` command lines for Jetson devices whose TensorRT it cannot run here
(JetPack 4.6 ships TensorRT 8.2, JetPack 5 ships 8.5, JetPack 6 ships 10.3, ...), so it checks
them against a vendored description of each release's flags
(``edgekit/backends/tensorrt/trtexec_flags.json``).  This script regenerates that file from the
open-source TensorRT repository (https://github.com/NVIDIA/TensorRT), whose ``samples/`` folder
holds trtexec's sources:

* ``samples/common/sampleOptions.cpp``: every option is consumed from an ``Arguments`` multimap
  (``--name=value`` split at the first ``=``) by ``getAndDelOption``-style helpers; whatever is
  left after ``AllOptions::parse`` makes trtexec fail with ``Unknown option``;
* ``samples/common/sampleOptions.h``: the member types of the option classes (``AllOptions::build``
  is a ``BuildOptions``, ...), used to follow ``member.parse(arguments)`` calls;
* ``samples/trtexec/*.cpp``: trtexec's ``main``, which calls ``parseHelp`` and ``AllOptions::parse``;
* ``include/NvInferVersion.h``: the TensorRT version, used as the JSON key.

The sources are not compiled.  Comments are stripped, preprocessor conditionals are evaluated with
the defines of a standard Linux build (``TRT_WINML=0``, safety-only ``ENABLE_UNIFIED_BUILDER``
off, ``_WIN32`` undefined; change them with ``--define``), and a small brace-matching scanner
splits the files into functions and lambdas.  A function is a *consumer* of one of its parameters
when it looks the parameter up in the ``Arguments`` map (``.find``/``.equal_range``) and erases
the entry, or passes the parameter on to a consumer (``getAndDelNegOption``, ``getShapesBuild``,
the ``getFormats`` lambda, ...).  A flag is *accepted* when a string literal such as ``"--fp16"``
is passed to a consumer inside a function reachable from ``AllOptions::parse`` / ``parseHelp``
(so options of ``SafeBuilderOptions`` and ``TaskInferenceOptions``, which belong to other tools,
are not counted), or inside trtexec's own sources.  Peek-only lookups (``getOption``,
``peekArg``) do not count: an option that is only peeked at is still reported as unknown.

Run it against a clone (or bare mirror) of NVIDIA/TensorRT::

    python scripts/extract_trtexec_flags.py --git-dir /path/to/TensorRT/.git \\
        --rev 8.2.1 --rev 8.5.2 --rev 8.5.3 --rev v8.6.1 --rev v10.3.0 --rev v10.16 --rev v11.1 \\
        -o edgekit/backends/tensorrt/trtexec_flags.json

Each version entry holds ``revision`` (``<rev> <commit sha>``), ``build`` (NV_TENSORRT_BUILD),
``flags`` (sorted accepted flags, including the short ``-h``), ``removed`` (flags that are consumed
but make the parser throw, with the message, and flags that an earlier release of the same output
accepted but this one no longer parses, so trtexec stops with ``Unknown option``), ``deprecated``
(accepted flags that print a deprecation/no-effect warning, or whose help entry starts with
``[Deprecated]``, with the message), ``conditional`` (flags consumed only under a preprocessor
condition that is false for the standard build, with the condition), ``undocumented`` (accepted
but absent from ``trtexec --help``) and ``help_only`` (listed in ``--help`` but not consumed).
Anything the scanner could not resolve is reported on stderr and stored under ``unresolved``.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

OPTIONS_CPP = "samples/common/sampleOptions.cpp"
OPTIONS_H = "samples/common/sampleOptions.h"
TRTEXEC_DIR = "samples/trtexec/"
VERSION_HEADER = "include/NvInferVersion.h"

PARSE_ENTRY_POINTS = ("AllOptions::parse", "parseHelp")
HELP_ENTRY_POINTS = ("AllOptions::help",)

# Defines of a standard (non-WinML, non-safety) Linux build; identifiers missing here count as 0.
DEFAULT_DEFINES: dict[str, int] = {"TRT_WINML": 0, "__linux__": 1}

# Words in a warning that mark the flag itself as deprecated / without effect.
DEPRECATION_WORDS = ("deprecat", "no effect", "no-op", "removed", "obsolete", "superseded", "ignored")

CPP_KEYWORDS = frozenset(
    {
        "if", "for", "while", "switch", "return", "sizeof", "catch", "throw", "new", "delete", "case",
        "static_cast", "dynamic_cast", "reinterpret_cast", "const_cast", "decltype", "alignof", "noexcept",
    }
)  # fmt: skip
IDENT_RE = re.compile(r"[A-Za-z_]\w*")
DEFINE_RE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+(.+?)[ \t]*$", re.MULTILINE)
CALL_RE = re.compile(
    r"(?<![\w.>:])((?:[A-Za-z_]\w*\s*::\s*)*[A-Za-z_]\w*)\s*(?:<[^<>;(){}]*(?:<[^<>;(){}]*>[^<>;(){}]*)*>)?\s*\("
)
MEMBER_PARSE_RE = re.compile(r"([A-Za-z_]\w*)\s*(?:\.|->)\s*(parse|help)\s*\(")
LAMBDA_RE = re.compile(r"\b([A-Za-z_]\w*)\s*=\s*\[")
FUNC_NAME_RE = re.compile(r"((?:[A-Za-z_]\w*\s*::\s*)*(?:operator\s*[^\s\w(]+|~?[A-Za-z_]\w*))\s*$")
TRAILING_QUALIFIERS_RE = re.compile(r"\)\s*(?:(?:const|override|final|noexcept|volatile|&&|&)\s*)*$")
FLAG_RE = re.compile(r"^-{1,2}[A-Za-z][\w-]*$")
HELP_ENTRY_RE = re.compile(r"^ {1,8}(-{1,2}[A-Za-z][\w-]*(?:\s*,\s*-{1,2}[A-Za-z][\w-]*)*)(.*)$")
CONDITION_VARS_RE = re.compile(r"^\s*([A-Za-z_]\w*)(?:\s*\|\|\s*([A-Za-z_]\w*))*\s*$")


# --------------------------------------------------------------------------------------------
# Source access
# --------------------------------------------------------------------------------------------


class GitRevision:
    """Files of ``rev`` in a git directory (bare or not), read with ``git show``."""

    def __init__(self, git_dir: Path, rev: str) -> None:
        self.git_dir = git_dir
        self.rev = rev
        self.sha = self._git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
        self.files = self._git("ls-tree", "-r", "--name-only", self.sha, "--", "samples", "include").splitlines()

    def _git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args], check=True, capture_output=True, text=True, errors="replace"
        )
        return result.stdout

    def read(self, path: str) -> str | None:
        if path not in self.files:
            return None
        return self._git("show", f"{self.sha}:{path}")

    def list_files(self, prefix: str) -> list[str]:
        return sorted(f for f in self.files if f.startswith(prefix))


def read_version(header: str) -> tuple[str, str]:
    """``(major.minor.patch, build)`` from NvInferVersion.h, following ``#define A B`` chains."""
    defines = {name: value.split("//")[0].strip() for name, value in DEFINE_RE.findall(header)}

    def resolve(name: str) -> str:
        value, seen = name, set()
        while value in defines and value not in seen:
            seen.add(value)
            value = defines[value]
        if not value.isdigit():
            raise ValueError(f"cannot resolve {name} in {VERSION_HEADER} (got {value!r})")
        return value

    parts = [resolve(f"NV_TENSORRT_{part}") for part in ("MAJOR", "MINOR", "PATCH")]
    build = resolve("NV_TENSORRT_BUILD") if "NV_TENSORRT_BUILD" in defines else ""
    return ".".join(parts), build


# --------------------------------------------------------------------------------------------
# Lexing helpers
# --------------------------------------------------------------------------------------------


def skip_literal(text: str, i: int) -> int:
    """Index just past the string/char literal starting at ``text[i]`` (a quote or a raw-string ``R``)."""
    if (
        text[i] == '"'
        and i > 0
        and text[i - 1] == "R"
        and re.search(r"(?:^|\W)(?:u8|[uUL])?$", text[max(0, i - 4) : i - 1])
    ):
        i -= 1  # the quote of a raw string R"delim( ... )delim"
    raw = re.match(r'R"([^()\\\s]{0,16})\(', text[i:])
    if raw:
        end = text.find(f'){raw.group(1)}"', i)
        return len(text) if end < 0 else end + len(raw.group(1)) + 2
    quote = text[i]
    j = i + 1
    while j < len(text) and text[j] != quote:
        if text[j] == "\\":
            j += 1
        elif text[j] == "\n":  # unterminated: give up on this line
            break
        j += 1
    return j + 1


def strip_comments(text: str) -> str:
    """Replace comments by spaces, keeping newlines and literals (so line numbers stay valid)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c in "\"'" or (c == "R" and text.startswith('R"', i) and (i == 0 or not text[i - 1].isalnum())):
            if c == "'" and i > 0 and text[i - 1].isalnum():  # digit separator 1'000
                out.append(c)
                i += 1
                continue
            j = skip_literal(text, i)
            out.append(text[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def match_bracket(text: str, i: int) -> int:
    """Index of the bracket closing the one at ``text[i]`` (skipping literals); -1 if unbalanced."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[text[i]]]
    j = i + 1
    while j < len(text):
        c = text[j]
        if c in "\"'":
            if c == "'" and text[j - 1].isalnum():
                j += 1
                continue
            j = skip_literal(text, j)
            continue
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if c != stack.pop():
                return -1
            if not stack:
                return j
        j += 1
    return -1


def split_args(text: str) -> list[str]:
    """Split a call's argument text at top-level commas (angle brackets count only in declarations)."""
    args: list[str] = []
    depth, start, j = 0, 0, 0
    while j < len(text):
        c = text[j]
        if c in "\"'" and not (c == "'" and j > 0 and text[j - 1].isalnum()):
            j = skip_literal(text, j)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[start:j].strip())
            start = j + 1
        j += 1
    tail = text[start:].strip()
    if tail or args:
        args.append(tail)
    return args


ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "0": ""}
RAW_PREFIX_RE = re.compile(r'(?:u8|u|U|L)?R"([^()\\\s]{0,16})\(')


def string_literals(text: str) -> tuple[list[str], str]:
    """``(decoded string literals, text with the literals removed)``; raw strings are kept verbatim."""
    literals: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        prev = text[i - 1] if i else " "
        raw = RAW_PREFIX_RE.match(text, i) if c in "uUL8R" and not (prev.isalnum() or prev == "_") else None
        if raw:
            j = skip_literal(text, raw.start(0) + raw.group(0).index("R"))
            literals.append(text[raw.end() : j - len(raw.group(1)) - 2])
            i = j
        elif c == '"':
            j = skip_literal(text, i)
            literals.append(re.sub(r"\\(.)", lambda m: ESCAPES.get(m.group(1), m.group(1)), text[i + 1 : j - 1]))
            i = j
        elif c == "'" and not prev.isalnum():
            i = skip_literal(text, i)
        else:
            rest.append(c)
            i += 1
    return literals, "".join(rest)


def string_value(expr: str) -> str | None:
    """Value of an expression made only of adjacent string literals, else None."""
    literals, rest = string_literals(expr)
    return "".join(literals) if literals and not rest.strip() else None


def literal_text(expr: str) -> str:
    """All string literals of an expression joined (used for messages such as warnings)."""
    return re.sub(r"\s+", " ", "".join(string_literals(expr)[0])).strip()


def param_names(params: str) -> list[str]:
    """Names of the parameters in a declaration's parameter list (``""`` for unnamed ones)."""
    names: list[str] = []
    for param in split_declaration_params(params):
        decl = re.split(r"=(?!=)", param, maxsplit=1)[0].strip()
        decl = re.sub(r"\[[^\]]*\]\s*$", "", decl)
        idents = IDENT_RE.findall(decl)
        names.append(idents[-1] if len(idents) > 1 or (idents and "&" in decl) else "")
    return names


def split_declaration_params(params: str) -> list[str]:
    """Split a parameter list at commas outside (), [], {} and <>."""
    out: list[str] = []
    depth, start = 0, 0
    for j, c in enumerate(params):
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(params[start:j])
            start = j + 1
    if params.strip():
        out.append(params[start:])
    return [p.strip() for p in out if p.strip()]


# --------------------------------------------------------------------------------------------
# Preprocessor
# --------------------------------------------------------------------------------------------


def eval_condition(expr: str, defines: dict[str, int]) -> bool:
    """Evaluate an ``#if`` expression; unknown identifiers are 0."""
    expr = re.sub(
        r"\bdefined\s*\(\s*(\w+)\s*\)|\bdefined\s+(\w+)",
        lambda m: " 1 " if (m.group(1) or m.group(2)) in defines else " 0 ",
        expr,
    )
    expr = expr.replace("&&", " and ").replace("||", " or ")
    expr = re.sub(r"!(?!=)", " not ", expr)
    expr = re.sub(r"\b(\d+)[uUlL]+\b", r"\1", expr)
    expr = IDENT_RE.sub(
        lambda m: m.group(0) if m.group(0) in ("and", "or", "not") else str(defines.get(m.group(0), 0)), expr
    )
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        print(f"warning: cannot evaluate #if {expr!r}; treated as false", file=sys.stderr)
        return False
    allowed = (ast.Expression, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Compare, ast.Constant, ast.And, ast.Or, ast.Not,
               ast.USub, ast.Add, ast.Sub, ast.Mult, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)  # fmt: skip
    if not all(isinstance(node, allowed) for node in ast.walk(tree)):
        print(f"warning: unsupported #if {expr!r}; treated as false", file=sys.stderr)
        return False
    return bool(eval(compile(tree, "<if>", "eval"), {"__builtins__": {}}))


def preprocess(text: str, defines: dict[str, int]) -> tuple[str, str, list[str]]:
    """``(active_text, all_branches_text, condition_of_line)`` for comment-free ``text``.

    ``active_text`` blanks the lines of inactive branches; ``all_branches_text`` keeps every branch.
    Both blank the directives themselves.  ``condition_of_line[k]`` describes the conditions that
    guard line ``k`` (``""`` when unconditional).
    """
    active_lines: list[str] = []
    all_lines: list[str] = []
    conditions: list[str] = []
    # Stack of (guard description, this branch active, some earlier branch taken, enclosing active).
    stack: list[tuple[str, bool, bool, bool]] = []
    lines = text.split("\n")
    k = 0
    while k < len(lines):
        line = lines[k]
        directive = re.match(r"^\s*#\s*(\w+)\s*(.*)$", line)
        count = 1
        if directive:
            while line.endswith("\\") and k + count < len(lines):
                line = line[:-1] + " " + lines[k + count]
                count += 1
            directive = re.match(r"^\s*#\s*(\w+)\s*(.*)$", line)
        enclosing = all(frame[1] for frame in stack)
        if directive and directive.group(1) in ("if", "ifdef", "ifndef", "elif", "else", "endif"):
            name, arg = directive.group(1), directive.group(2).strip()
            if name in ("if", "ifdef", "ifndef"):
                expr = {"ifdef": f"defined({arg})", "ifndef": f"!defined({arg})"}.get(name, arg)
                value = eval_condition(expr, defines)
                stack.append((expr, value, value, enclosing))
            elif name == "elif" and stack:
                guard, _, taken, outer = stack.pop()
                value = not taken and eval_condition(arg, defines)
                stack.append((f"!({guard}) && ({arg})", value, taken or value, outer))
            elif name == "else" and stack:
                guard, _, taken, outer = stack.pop()
                stack.append((f"!({guard})", not taken, True, outer))
            elif name == "endif" and stack:
                stack.pop()
            for _ in range(count):
                active_lines.append("")
                all_lines.append("")
                conditions.append(" && ".join(frame[0] for frame in stack))
        else:
            is_active = all(frame[1] for frame in stack)
            for offset in range(count):
                raw = lines[k + offset]
                keep = "" if directive else raw  # other directives (#include, #define) are dropped
                active_lines.append(keep if is_active else "")
                all_lines.append(keep)
                conditions.append(" && ".join(frame[0] for frame in stack))
        k += count
    return "\n".join(active_lines), "\n".join(all_lines), conditions


# --------------------------------------------------------------------------------------------
# Functions, lambdas and calls
# --------------------------------------------------------------------------------------------


@dataclass
class Call:
    name: str  # last component of the callee (``getAndDelOption``)
    args: list[str]
    start: int  # index of the callee name
    end: int  # index of the closing parenthesis


@dataclass
class Callable:
    name: str  # qualified for functions (``BuildOptions::parse``), plain for lambdas
    params: list[str]
    body: str
    body_start: int  # index of the body in the scanned text
    file: str
    lambdas: list[Callable] = field(default_factory=list)

    @property
    def short_name(self) -> str:
        return self.name.rsplit("::", 1)[-1]

    @property
    def owner(self) -> str:
        return self.name.rsplit("::", 1)[0] if "::" in self.name else ""

    def local_names(self) -> set[str]:
        """Parameters of the callable and of the lambdas it defines."""
        names = {p for p in self.params if p}
        for lam in self.lambdas:
            names |= lam.local_names()
        return names


def find_calls(text: str) -> list[Call]:
    calls: list[Call] = []
    for m in CALL_RE.finditer(text):
        name = re.sub(r"\s+", "", m.group(1)).rsplit("::", 1)[-1]
        if name in CPP_KEYWORDS:
            continue
        open_paren = m.end() - 1
        close = match_bracket(text, open_paren)
        if close < 0:
            continue
        calls.append(Call(name, split_args(text[open_paren + 1 : close]), m.start(1), close))
    return calls


def find_lambdas(body: str, offset: int, file: str) -> list[Callable]:
    """Named lambdas (``auto name = [captures](params) { ... }``) in a function body."""
    lambdas: list[Callable] = []
    for m in LAMBDA_RE.finditer(body):
        close_capture = match_bracket(body, m.end() - 1)
        if close_capture < 0:
            continue
        rest = re.match(r"\s*\(", body[close_capture + 1 :])
        if not rest:
            continue
        open_paren = close_capture + rest.end()
        close_paren = match_bracket(body, open_paren)
        if close_paren < 0:
            continue
        spec = re.match(r"\s*(?:mutable\s*)?(?:noexcept\s*)?(?:->\s*[^{;]+?)?\s*\{", body[close_paren + 1 :])
        if not spec:
            continue
        open_brace = close_paren + spec.end()
        close_brace = match_bracket(body, open_brace)
        if close_brace < 0:
            continue
        params = param_names(body[open_paren + 1 : close_paren])
        lambdas.append(Callable(m.group(1), params, body[open_brace + 1 : close_brace], offset + open_brace + 1, file))
    return lambdas


def scan_functions(text: str, file: str) -> list[Callable]:
    """Function definitions at namespace level of comment-free, preprocessed ``text``."""
    functions: list[Callable] = []
    i, n, seg_start = 0, len(text), 0
    while i < n:
        c = text[i]
        if c in "\"'":
            if c == "'" and i > 0 and text[i - 1].isalnum():
                i += 1
                continue
            i = skip_literal(text, i)
            continue
        if c in ";}":  # end of a declaration or of a namespace
            seg_start = i + 1
        elif c == "{":
            header = text[seg_start:i].strip()
            if re.search(r"(?:^|\s)namespace(?:\s+[\w:]+)?$|extern\s+\"C\"$", header):
                seg_start = i + 1
                i += 1
                continue
            close = match_bracket(text, i)
            if close < 0:
                raise ValueError(f"{file}: unbalanced brace at offset {i}")
            function = parse_function_header(header)
            if function:
                name, params = function
                body = text[i + 1 : close]
                functions.append(Callable(name, params, body, i + 1, file, find_lambdas(body, i + 1, file)))
            i = close + 1
            seg_start = i
            continue
        i += 1
    return functions


def parse_function_header(header: str) -> tuple[str, list[str]] | None:
    """``(qualified name, parameter names)`` when ``header`` ends like a function declarator."""
    trailing = TRAILING_QUALIFIERS_RE.search(header)
    if not trailing or "=" in header.split("(", 1)[0]:
        return None
    close = trailing.start()
    depth, j = 0, close
    while j >= 0:
        if header[j] == ")":
            depth += 1
        elif header[j] == "(":
            depth -= 1
            if depth == 0:
                break
        j -= 1
    if j < 0:
        return None
    name = FUNC_NAME_RE.search(re.sub(r"<[^<>()]*(?:<[^<>()]*>[^<>()]*)*>\s*$", "", header[:j]))
    if not name or name.group(1) in CPP_KEYWORDS:
        return None
    return re.sub(r"\s+", "", name.group(1)), param_names(header[j + 1 : close])


def class_members(header_text: str) -> dict[str, dict[str, str]]:
    """``{class: {member: type}}`` for the data members of the classes/structs of a header."""
    classes: dict[str, dict[str, str]] = {}
    for m in re.finditer(r"\b(?:class|struct)\s+(\w+)\s*(?::[^;{]*)?\{", header_text):
        close = match_bracket(header_text, m.end() - 1)
        if close < 0:
            continue
        body = header_text[m.end() : close]
        members = classes.setdefault(m.group(1), {})
        for member in re.finditer(
            r"(?:^|(?<=[;{}])|(?<=public:)|(?<=private:)|(?<=protected:))\s*((?:\w+::)*[A-Za-z_]\w*)\s+"
            r"([A-Za-z_]\w*)\s*(?:\{[^;{}]*\}|=[^;]*)?;",
            body,
        ):
            members[member.group(2)] = member.group(1)
    return classes


# --------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------


def all_callables(functions: list[Callable]) -> list[Callable]:
    out: list[Callable] = []
    for function in functions:
        out.append(function)
        out.extend(function.lambdas)
    return out


def find_consumers(functions: list[Callable]) -> dict[str, set[int]]:
    """``{callable short name: indices of the parameters it consumes as option names}``."""
    consumers: dict[str, set[int]] = {}
    callables = all_callables(functions)
    for item in callables:
        for index, param in enumerate(item.params):
            if not param:
                continue
            for arguments in {p for p in item.params if p and p != param}:
                lookup = rf"\b{arguments}\s*\.\s*(?:find|equal_range)\s*\(\s*{param}\s*\)"
                if re.search(lookup, item.body) and re.search(rf"\b{arguments}\s*\.\s*erase\s*\(", item.body):
                    consumers.setdefault(item.short_name, set()).add(index)
    changed = True
    while changed:
        changed = False
        for item in callables:
            for call in find_calls(item.body):
                for index in consumers.get(call.name, ()):
                    if index < len(call.args) and call.args[index] in item.params:
                        mine = item.params.index(call.args[index])
                        if mine not in consumers.setdefault(item.short_name, set()):
                            consumers[item.short_name].add(mine)
                            changed = True
    return consumers


def reachable(
    functions: list[Callable], entries: tuple[str, ...], members: dict[str, dict[str, str]], unresolved: list[str]
) -> list[Callable]:
    """Functions reachable from ``entries`` through direct calls and ``member.parse()``/``.help()`` calls."""
    by_name: dict[str, list[Callable]] = {}
    for function in functions:
        by_name.setdefault(function.name, []).append(function)
    seen: set[int] = set()
    queue = [f for e in entries for f in by_name.get(e, [])]
    for entry in entries:
        if entry not in by_name:
            unresolved.append(f"entry point {entry} not found")
    out: list[Callable] = []
    while queue:
        function = queue.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        out.append(function)
        lambda_names = {lam.name for lam in function.lambdas}
        for m in MEMBER_PARSE_RE.finditer(function.body):
            member_type = members.get(function.owner, {}).get(m.group(1))
            if member_type and f"{member_type}::{m.group(2)}" in by_name:
                queue.extend(by_name[f"{member_type}::{m.group(2)}"])
            elif m.group(1) not in function.local_names():
                unresolved.append(f"{function.name}: cannot resolve {m.group(0)}...)")
        for call in find_calls(function.body):
            qualified = re.sub(r"\s+", "", function.body[call.start : call.end]).split("(", 1)[0].split("<", 1)[0]
            if call.name in lambda_names:
                continue
            for candidate in (qualified, f"{function.owner}::{call.name}", call.name):
                if candidate and candidate in by_name:
                    queue.extend(by_name[candidate])
                    break
    return out


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index)


def following_block(text: str, index: int) -> str | None:
    """The statement or ``{...}`` block that starts at ``index`` (after whitespace)."""
    m = re.compile(r"\s*").match(text, index)
    start = m.end() if m else index
    if start < len(text) and text[start] == "{":
        close = match_bracket(text, start)
        return text[start + 1 : close] if close > 0 else None
    end = text.find(";", start)
    return text[start : end + 1] if end >= 0 else None


def classify_block(block: str) -> tuple[str, str] | None:
    """``("removed", message)`` if the block throws first thing, ``("deprecated", message)`` if it warns so."""
    first = block.strip()
    if re.match(r"throw\b", first):
        return "removed", literal_text(first.split(";", 1)[0]) or "throws"
    for statement in block.split(";"):
        if re.search(r"\bgLog(?:Warning|Error|Info)\b", statement):
            message = literal_text(statement)
            if any(word in message.lower() for word in DEPRECATION_WORDS):
                return "deprecated", message
    return None


@dataclass
class FlagUse:
    flag: str
    function: Callable
    call: Call


def flag_uses(functions: list[Callable], consumers: dict[str, set[int]], unresolved: list[str]) -> list[FlagUse]:
    uses: list[FlagUse] = []
    for function in functions:
        local = function.local_names()
        for call in find_calls(function.body):
            for index in sorted(consumers.get(call.name, ())):
                if index >= len(call.args):
                    continue
                arg = call.args[index]
                value = string_value(arg)
                if value is not None and FLAG_RE.match(value):
                    uses.append(FlagUse(value, function, call))
                elif value is not None:
                    unresolved.append(f"{function.name}: {call.name}() consumes non-flag literal {arg}")
                elif arg not in local:
                    unresolved.append(f"{function.name}: {call.name}() consumes non-literal option name {arg}")
    return uses


def classify_uses(uses: list[FlagUse]) -> dict[str, tuple[str, str]]:
    """``{flag: (kind, message)}`` for flags whose consumption throws or warns about deprecation."""
    result: dict[str, tuple[str, str]] = {}
    value_vars: dict[tuple[int, str], list[str]] = {}
    for use in uses:
        body, call = use.function.body, use.call
        before = body[max(0, call.start - 60) : call.start]
        cond = re.search(r"\b(?:if|while)\s*(\()\s*$", before)
        if cond:
            open_paren = call.start - len(before) + cond.start(1)
            close = match_bracket(body, open_paren)
            if close > 0 and body[call.end + 1 : close].strip() == "":
                block = following_block(body, close + 1)
                kind = classify_block(block) if block else None
                if kind:
                    result.setdefault(use.flag, kind)
            continue
        if re.search(r"[;{}]\s*$", before) and call.args and IDENT_RE.fullmatch(call.args[-1]):
            value_vars.setdefault((id(use.function), call.args[-1]), []).append(use.flag)
    # ``getAndDelOption(arguments, "--x", x); if (x || y) { warn/throw }``
    for function in {id(u.function): u.function for u in uses}.values():
        for m in re.finditer(r"\bif\s*\(", function.body):
            close = match_bracket(function.body, m.end() - 1)
            condition = function.body[m.end() : close]
            if close < 0 or not CONDITION_VARS_RE.match(condition):
                continue
            flags = [f for var in re.findall(r"\w+", condition) for f in value_vars.get((id(function), var), [])]
            block = following_block(function.body, close + 1) if flags else None
            kind = classify_block(block) if block else None
            for flag in flags if kind else []:
                result.setdefault(flag, kind)  # type: ignore[arg-type]
    return result


def help_entries(functions: list[Callable]) -> dict[str, str]:
    """``{flag: help text}`` from the string literals of the reachable ``help`` functions."""
    entries: dict[str, str] = {}
    for function in functions:
        body = re.sub(r"\bstd::endl\b", lambda _: '"\\n"', function.body)
        text = "".join(string_literals(body)[0])
        owned: list[str] = []  # flags whose entry the current line continues
        for line in text.split("\n"):
            m = HELP_ENTRY_RE.match(line)
            if m:
                names = [re.sub(r"=.*", "", f) for f in re.findall(r"-{1,2}[A-Za-z][\w-]*", m.group(1))]
                owned = [name for name in names if name not in entries]
                for name in owned:
                    entries[name] = m.group(2).strip()
            elif owned and re.match(r"^\s{10,}\S", line):
                for name in owned:
                    entries[name] = f"{entries[name]} {line.strip()}".strip()
            else:
                owned = []
    return entries


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def analyse_revision(revision: GitRevision, defines: dict[str, int]) -> tuple[str, dict[str, object], list[str]]:
    header = revision.read(VERSION_HEADER)
    options_cpp = revision.read(OPTIONS_CPP)
    options_h = revision.read(OPTIONS_H)
    if header is None or options_cpp is None or options_h is None:
        raise SystemExit(f"{revision.rev}: missing {VERSION_HEADER}, {OPTIONS_CPP} or {OPTIONS_H}")
    version, build = read_version(header)
    unresolved: list[str] = []

    sources = {OPTIONS_CPP: options_cpp}
    for path in revision.list_files(TRTEXEC_DIR):
        if path.endswith(".cpp") and not path.endswith(".test.cpp"):
            sources[path] = revision.read(path) or ""
    trtexec_text = "".join(text for path, text in sources.items() if path != OPTIONS_CPP)
    if "parseHelp" not in trtexec_text or not re.search(r"\bAllOptions\b", trtexec_text):
        unresolved.append("trtexec sources do not mention parseHelp/AllOptions: entry points may be wrong")

    _, all_h, _ = preprocess(strip_comments(options_h), defines)
    members = class_members(all_h)
    processed = {path: preprocess(strip_comments(text), defines) for path, text in sources.items()}

    def analyse(branches: int) -> tuple[dict[str, tuple[str, str]], dict[str, str], list[FlagUse]]:
        """Scan the active text (``branches=0``) or every ``#if`` branch (``branches=1``)."""
        functions: list[Callable] = []
        trtexec_functions: list[Callable] = []
        for path, texts in processed.items():
            (functions if path == OPTIONS_CPP else trtexec_functions).extend(scan_functions(texts[branches], path))
        consumers = find_consumers(functions + trtexec_functions)
        parse_side = reachable(functions, PARSE_ENTRY_POINTS, members, unresolved) + trtexec_functions
        uses = flag_uses(parse_side, consumers, unresolved)
        help_side = reachable(functions, HELP_ENTRY_POINTS, members, unresolved)
        return classify_uses(uses), help_entries(help_side), uses

    classified, helps, uses = analyse(0)
    accepted = {use.flag for use in uses}
    conditional: dict[str, str] = {}
    try:
        _, _, all_uses = analyse(1)
    except ValueError as exc:  # branches with unbalanced braces: no conditional information
        unresolved.append(f"all-branches scan failed: {exc}")
        all_uses = []
    for use in all_uses:
        if use.flag not in accepted:
            _, every_branch, line_conditions = processed[use.function.file]
            line = line_of(every_branch, use.function.body_start + use.call.start)
            conditional[use.flag] = line_conditions[line] or "?"

    removed = {flag: msg for flag, (kind, msg) in classified.items() if kind == "removed"}
    deprecated = {flag: msg for flag, (kind, msg) in classified.items() if kind == "deprecated"}
    for flag, text in helps.items():
        if flag in accepted and flag not in deprecated and re.match(r"\[deprecated\]", text, re.IGNORECASE):
            deprecated[flag] = text
    entry: dict[str, object] = {
        "revision": f"{revision.rev} {revision.sha}",
        "build": build,
        "flags": sorted(accepted - set(removed)),
        "removed": dict(sorted(removed.items())),
        "deprecated": dict(sorted(deprecated.items())),
        "conditional": dict(sorted(conditional.items())),
        "undocumented": sorted(accepted - set(helps)),
        "help_only": sorted(set(helps) - accepted - set(conditional)),
    }
    if unresolved:
        entry["unresolved"] = sorted(set(unresolved))
    return version, entry, sorted(set(unresolved))


def parse_define(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    return name.strip(), int(value or "1", 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--git-dir", type=Path, required=True, help="NVIDIA/TensorRT git directory (bare is fine)")
    parser.add_argument("--rev", action="append", required=True, help="tag, branch or commit (repeatable)")
    parser.add_argument("--define", action="append", default=[], type=parse_define, metavar="NAME[=VALUE]",
                        help="preprocessor define (default: TRT_WINML=0, __linux__=1)")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, help="JSON file to write (default: stdout)")
    args = parser.parse_args(argv)

    defines = dict(DEFAULT_DEFINES)
    for name, value in args.define:
        defines[name] = value

    versions: dict[str, dict[str, object]] = {}
    for rev in args.rev:
        version, entry, unresolved = analyse_revision(GitRevision(args.git_dir, rev), defines)
        for problem in unresolved:
            print(f"{rev}: unresolved: {problem}", file=sys.stderr)
        if version in versions:
            raise SystemExit(f"{rev}: TensorRT {version} already extracted from {versions[version]['revision']}")
        versions[version] = entry
        print(f"{rev}: TensorRT {version}: {len(entry['flags'])} flags", file=sys.stderr)  # type: ignore[arg-type]

    def version_key(item: tuple[str, dict[str, object]]) -> tuple[int, ...]:
        return tuple(int(part) for part in item[0].split("."))

    ordered = dict(sorted(versions.items(), key=version_key))
    # Flags accepted by an earlier extracted release but no longer consumed are rejected as unknown options.
    earlier: dict[str, str] = {}
    for version, entry in ordered.items():
        flags = set(entry["flags"])  # type: ignore[arg-type]
        removed: dict[str, str] = entry["removed"]  # type: ignore[assignment]
        for flag, last in earlier.items():
            if flag not in flags and flag not in removed and flag not in entry["conditional"]:  # type: ignore[operator]
                removed[flag] = f"not parsed: trtexec fails with 'Unknown option' (accepted by TensorRT {last})"
        entry["removed"] = dict(sorted(removed.items()))
        earlier.update(dict.fromkeys(flags, version))

    result = {
        "source": (
            "Generated by scripts/extract_trtexec_flags.py from https://github.com/NVIDIA/TensorRT: options consumed "
            f"from the Arguments map in {OPTIONS_CPP} by functions reachable from {' / '.join(PARSE_ENTRY_POINTS)} "
            f"(plus {TRTEXEC_DIR}*.cpp), preprocessed with {json.dumps(defines, sort_keys=True)}; "
            f"help text from {HELP_ENTRY_POINTS[0]}; version from {VERSION_HEADER}. Flags not listed make "
            "trtexec fail with 'Unknown option'."
        ),
        "versions": ordered,
    }
    text = json.dumps(result, indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
