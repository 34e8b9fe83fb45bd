"""The bundle: a directory with `manifest.json` and the model file(s), written atomically.

Everything is written into a hidden staging directory beside the destination and renamed into place
at the end, so an error or Ctrl-C never leaves a half-written bundle. Loading verifies every file's
sha256 against the manifest, so a modified or truncated model file is refused, not run.
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

from edgekit.core.errors import BundleError, EdgekitError
from edgekit.core.files import sha256_file, writable_directory_problem

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def check_writable_destination(out: Path, force: bool) -> None:
    """Fail fast, before any slow work, if the bundle could not be written at `out`."""
    if out.exists() and not force:
        raise EdgekitError(f"{out} already exists; choose another --out or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise EdgekitError(f"{out} exists and is not a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise EdgekitError(f"cannot write {out}: the directory {parent} does not exist")
    problem = writable_directory_problem(parent, must_exist=True)  # a real probe: permission bits lie for root
    if problem:
        raise EdgekitError(f"cannot write {out}: {problem}")


@contextlib.contextmanager
def staged_directory(out: Path, force: bool) -> Iterator[Path]:
    """Yield an empty staging directory that becomes `out` only if the block finishes."""
    check_writable_destination(out, force)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as exc:
        raise EdgekitError(f"cannot write {out}: {exc.strerror}") from None
    try:
        yield staging
        publish(staging, out, force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(directory: Path, out: Path, force: bool) -> None:
    """Rename a finished bundle directory to `out` (on the same file system); with `force`, swap it with an
    existing `out` so the old bundle survives a failed rename."""
    check_writable_destination(out, force)
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
        os.replace(out, old / "bundle")
        os.replace(directory, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(directory, out)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file already in `directory` into the manifest, then write manifest.json."""
    files = {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    manifest = {**manifest, "schema_version": SCHEMA_VERSION, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return manifest


def read_manifest(bundle: str | os.PathLike[str], verify: bool = True) -> dict[str, Any]:
    """The manifest of a bundle; with `verify`, also check that every listed file is intact."""
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} is not an edgekit bundle (no {MANIFEST}); create one with `edgekit compile`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is unreadable or not JSON ({exc}); recompile the bundle") from None
    if not isinstance(manifest, dict) or "schema_version" not in manifest:
        raise BundleError(f"{path} is not an edgekit manifest; recompile the bundle")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise BundleError(
            f"{bundle} uses bundle schema {manifest['schema_version']}, this edgekit reads schema "
            f"{SCHEMA_VERSION}; recompile it with this edgekit version"
        )
    if verify:
        verify_files(bundle, manifest)
    return manifest


def verify_files(bundle: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{bundle}/{MANIFEST} lists no files; recompile the bundle")
    for name, expected in files.items():
        path = bundle / name
        if not path.is_file():
            raise BundleError(f"{bundle} is missing {name}; recompile the bundle")
        if sha256_file(path) != expected:
            raise BundleError(
                f"{path} does not match the sha256 in its manifest (modified or corrupted); recompile the bundle"
            )
