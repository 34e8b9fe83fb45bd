"""File helpers with no heavy imports: hashing, and writes that never leave half a file behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temp path beside `path`, renamed over it if the block finishes and deleted if it does not."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; the result should get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def writable_directory_problem(directory: Path, must_exist: bool = False) -> str | None:
    """Why files cannot be created in `directory` (or, unless `must_exist`, in the parent that will hold
    it), else None. A real probe file, not os.access: root passes os.access on read-only mounts.
    """
    existing = directory if directory.exists() or must_exist else directory.parent
    if not existing.is_dir():
        return f"{existing} is not an existing directory"
    try:
        handle, probe = tempfile.mkstemp(prefix=".edgekit-probe-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return f"{existing} is not writable ({exc.strerror or exc})"
    return None
