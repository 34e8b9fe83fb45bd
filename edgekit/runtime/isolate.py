"""Parse an untrusted model file in a child process first, so a native crash is an error, not a dead caller.

A hash-matching but hostile .tflite/.xml/.onnx/engine can abort the process inside a runtime's native parser
(no Python exception to catch). Loading a bundle (`edgekit.load`, predict, bench) and `inspect` of a model file
therefore do the same work once in a child process: when the child dies by a signal, the caller gets one
BundleError naming the file and the signal, and the parent never parses it. A fleet that trusts its bundles
turns this off with EDGEKIT_ISOLATE_PARSING=0 (benchmarks/isolated_load.py measures what it costs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Sequence

from edgekit.core.errors import BundleError, EdgekitError

ISOLATE_ENV = "EDGEKIT_ISOLATE_PARSING"
BUNDLE_TAG = "[bundle] "  # a child's error line that was a BundleError (load_probe.py): raised as one here
CHILD_TIMEOUT_S = 600.0  # a TensorRT engine or a large IR on a slow board; a hang is reported, not waited out


def isolation_enabled() -> bool:
    return os.environ.get(ISOLATE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def run_in_child(module: str, args: Sequence[str], what: str) -> str:
    """`python -m module args` with isolation off in the child (it does the work itself); its stdout. A child
    killed by a signal is a BundleError naming `what`; its own error line (exit 2) is raised as EdgekitError."""
    env = {**os.environ, ISOLATE_ENV: "0"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise BundleError(
            f"parsing {what} took more than {CHILD_TIMEOUT_S:.0f} s in a child process and was stopped; the file is "
            "malformed or hostile: recompile the bundle (or set EDGEKIT_ISOLATE_PARSING=0 if you trust it)"
        ) from None
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        raise BundleError(
            f"{what} crashed the runtime that parsed it ({name}, in a child process, so nothing else was "
            "affected); the file is not what edgekit writes: recompile the bundle from the original model"
        )
    if result.returncode == 2:
        lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        message = lines[-1][len("error: ") :] if lines else result.stderr.strip()[-300:]
        if message.startswith(BUNDLE_TAG):
            raise BundleError(message[len(BUNDLE_TAG) :])
        raise EdgekitError(message)
    if result.returncode != 0:  # the child's own bug: keep its traceback for the report
        raise RuntimeError(f"the isolated parse of {what} failed (exit {result.returncode}):\n{result.stderr}")
    return result.stdout
