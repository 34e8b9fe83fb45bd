"""`edgekit doctor`: what this machine can do with edgekit and what is missing, each with its fix.

Device side: runs on Python 3.8 without the workstation extra. Every backend reports on itself
(`Backend.diagnose`: installed or not, version, where it is imported from, and for TensorRT the
Jetson release, GPU, CUDA, DLA, power mode and whether `edgekit build` can run); this module adds the
Python, the install kind, free memory and which target files describe this machine.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

from edgekit.backends.base import Finding
from edgekit.backends.registry import RUNTIMES
from edgekit.core.install import WORKSTATION_MODULES, missing_modules, workstation_install_command
from edgekit.core.versions import EDGEKIT_VERSION
from edgekit.measure.host import host_target_name
from edgekit.targets import host_arch


def _memory() -> Finding:
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        available = int(fields["MemAvailable"].split()[0]) // 1024
        total = int(fields["MemTotal"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        return Finding("memory", "info", "free memory unknown (/proc/meminfo unreadable)", fact=True)
    status = "ok" if available >= 1024 else "problem"
    fix = None if status == "ok" else "close other programs: building an engine needs about 1 GB free"
    return Finding("memory", status, f"{available} MiB available of {total} MiB", fix, fact=True)


def _python() -> list[Finding]:
    version = ".".join(map(str, sys.version_info[:3]))
    findings = [Finding("python", "ok", f"Python {version} ({sys.executable}): runs predict, bench, inspect, build")]
    missing = missing_modules(WORKSTATION_MODULES)
    if sys.version_info < (3, 10):
        findings.append(
            Finding("workstation side", "info", f"compile/prune/finetune/report need Python 3.10+, this is {version}")
        )
    elif missing:
        findings.append(
            Finding(
                "workstation side",
                "info",
                f"not installed ({', '.join(missing)} missing): this is a device install",
                workstation_install_command(),
            )
        )
    else:
        findings.append(Finding("workstation side", "ok", "installed: compile, prune, finetune and report run here"))
    return findings


def diagnose() -> dict[str, Any]:
    """The doctor's report: findings (each ok / missing / problem / info, with a fix) and facts."""
    findings = [*_python(), _memory()]
    for backend in RUNTIMES.values():
        findings.extend(backend.diagnose())
    host = host_target_name()
    findings.append(
        Finding("target", "ok", f"this machine is target {host}")
        if host
        else Finding("target", "info", "no target file describes this machine (`edgekit targets` lists them)")
    )
    return {
        "edgekit": EDGEKIT_VERSION,
        "python": platform.python_version(),
        "machine": host_arch(),
        "host_target": host,
        "findings": [finding.to_dict() for finding in findings],
        "problems": sum(finding.status == "problem" for finding in findings),
    }
