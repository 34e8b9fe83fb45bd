"""Writing an export (a Triton model repository, a DeepStream folder) the way a bundle is written: staged
beside its destination and renamed into place only when complete, so a failure leaves nothing half-written,
and `--force` replaces only an earlier edgekit export, never a folder of the user's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.core.files import writable_directory_problem

MARKER = "edgekit-export.json"  # what edgekit wrote here, and from which bundle: also what --force may replace


def _check_destination(out: Path, force: bool) -> None:
    if out.exists() or out.is_symlink():
        if not force:
            raise EdgekitError(
                f"{out} already exists; pass --force to replace an earlier export, or choose another --out"
            )
        if not (out.is_dir() and not out.is_symlink() and (out / MARKER).is_file()):
            raise EdgekitError(
                f"{out} exists and is not an edgekit export (no {MARKER}); --force replaces only exports, "
                "so choose another --out"
            )
    parent = Path(os.path.abspath(out)).parent
    if not parent.is_dir():
        raise EdgekitError(f"cannot write {out}: the directory {parent} does not exist")
    problem = writable_directory_problem(parent, must_exist=True)
    if problem:
        raise EdgekitError(f"cannot write {out}: {problem}")


@contextlib.contextmanager
def staged_export(out: Path, force: bool, record: dict[str, Any]) -> Iterator[Path]:
    """An empty folder that becomes `out` (with `record` as its MARKER) only if the block finishes."""
    _check_destination(out, force)
    parent = Path(os.path.abspath(out)).parent
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    try:
        yield staging
        (staging / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        os.chmod(staging, 0o755)
        _check_destination(out, force)  # again: something may have appeared while the export ran
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.replace(out, old / "export")
            shutil.rmtree(old, ignore_errors=True)
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
