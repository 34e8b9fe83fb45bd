"""The bundle: a directory with `manifest.json` and the model file(s), written atomically, loaded verified.

Everything is written into a hidden staging directory beside the destination and renamed into place
at the end, so an error, Ctrl-C or SIGTERM never leaves a half-written bundle, and an existing directory
is replaced only with --force and only when it is an edgekit bundle. Loading reads each file once
through the bundle's own directory (no symlinks followed, nothing outside it), checks the sha256 of
those bytes against the manifest, and hands the same bytes to the runtime: there is no window between
the check and the use.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edgekit.core.errors import BundleError, EdgekitError
from edgekit.core.files import current_umask, sha256_file, writable_directory_problem
from edgekit.core.onnx_external import refuse_external_data
from edgekit.runtime.manifest import MANIFEST, MAX_MANIFEST_BYTES, SCHEMA_VERSION, Manifest, bundle_member, parse_json
from edgekit.runtime.signing import SIGNATURE

MAX_FILE_BYTES = (
    8 << 30
)  # the largest model file a bundle may hold (a GoogLeNet engine is ~30 MB, a VGG-16 one ~550 MB)


class MissingFile(BundleError):
    """A file the manifest lists (or the manifest itself) is not in the bundle."""


def is_bundle(path: Path) -> bool:
    """Whether `path` is a directory holding an edgekit manifest (what --force may replace)."""
    try:
        read_manifest(path, verify=False)
    except EdgekitError:
        return False
    return True


def check_writable_destination(out: Path, force: bool) -> None:
    """Fail fast, before any slow work, if the bundle could not be written at `out`."""
    absolute = Path(os.path.abspath(out))
    if absolute == Path(absolute.anchor) or Path.cwd() == absolute or absolute in Path.cwd().parents:
        raise EdgekitError(f"--out {out} is the current directory or one above it; name a new directory")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise EdgekitError(f"{out} exists and is not a directory; choose another --out")
    if out.exists() and not force:
        raise EdgekitError(f"{out} already exists; choose another --out or pass --force to replace it")
    if out.exists() and not is_bundle(out):
        raise EdgekitError(
            f"{out} exists and is not an edgekit bundle (no valid {MANIFEST}); --force replaces only bundles, "
            "so choose another --out"
        )
    parent = absolute.parent
    if not parent.is_dir():
        raise EdgekitError(f"cannot write {out}: the directory {parent} does not exist")
    problem = writable_directory_problem(parent, must_exist=True)  # a real probe: permission bits lie for root
    if problem:
        raise EdgekitError(f"cannot write {out}: {problem}")


@contextlib.contextmanager
def staged_directory(out: Path, force: bool) -> Iterator[Path]:
    """Yield an empty staging directory that becomes `out` only if the block finishes."""
    check_writable_destination(out, force)
    parent = Path(os.path.abspath(out)).parent
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
    """Rename a finished bundle directory to `out` (on the same file system). Without `force` the rename
    fails if anything appeared at `out` meanwhile (a concurrent compile): nothing is overwritten. With
    `force` an existing bundle is swapped out first, so it survives a failed rename."""
    check_writable_destination(out, force)
    os.chmod(directory, 0o777 & ~current_umask())  # mkdtemp makes 0700; a bundle is shared like any folder
    absolute = Path(os.path.abspath(out))
    old = None
    if absolute.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{absolute.name}.old-", dir=absolute.parent))
        os.replace(absolute, old / "bundle")
    try:
        if absolute.exists():  # an empty directory would be silently replaced by rename(2)
            raise FileExistsError(errno.EEXIST, "exists", str(out))
        os.rename(directory, absolute)
    except OSError as exc:
        if old is not None:
            with contextlib.suppress(OSError):
                os.replace(old / "bundle", absolute)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise EdgekitError(
                f"{out} was created by another process while this one ran; nothing was replaced and this "
                "bundle was not kept: choose another --out"
            ) from None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_manifest(directory: Path, draft: Mapping[str, Any]) -> Manifest:
    """Hash every file in `directory` into the manifest, check it as a reader would, write manifest.json."""
    files = {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.is_symlink() and path.name not in (MANIFEST, SIGNATURE)
    }
    data = {k: v for k, v in draft.items() if k not in ("schema_version", "files")}
    data.update(schema_version=SCHEMA_VERSION, files=files)
    try:
        manifest = Manifest.from_dict(data)
    except BundleError as exc:  # edgekit wrote something its own reader refuses: a bug, not a user error
        raise RuntimeError(f"edgekit built an invalid manifest: {exc}") from None
    (directory / MANIFEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return manifest


def _open_member(bundle: Path, name: str) -> int:
    """A read-only descriptor of `bundle/name`, opened one directory at a time without following a symlink,
    so no name can reach outside the bundle; only regular files."""
    parts = name.split("/")
    try:
        directory = os.open(bundle, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise BundleError(f"{bundle} cannot be opened as a bundle directory ({exc.strerror})") from None
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = child
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise MissingFile(f"{bundle} is missing {name}; recompile the bundle") from None
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise BundleError(
                f"{bundle}/{name} is or passes through a symbolic link; a bundle holds plain files"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise EdgekitError(f"{bundle}/{name} is not readable ({exc.strerror}); check its permissions") from None
        raise
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleError(f"{bundle}/{name} is not a regular file; a bundle holds plain files")
    return fd


def _read_member(bundle: Path, name: str, limit: int) -> bytes:
    fd = _open_member(bundle, name)
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            raise BundleError(f"{bundle}/{name} is larger than {limit >> 20} MiB, more than any edgekit bundle holds")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise BundleError(f"{bundle}/{name} grew past {limit >> 20} MiB while it was read")
    return data


def read_verified(bundle: Path, manifest: Manifest, name: str) -> bytes:
    """The bytes of a listed file, read once and checked against the manifest's sha256."""
    bundle_member(name, "a file name")
    expected = manifest.files.get(name)
    if expected is None:
        raise BundleError(
            f"{name} is not listed in {bundle}/{MANIFEST}, so it cannot be verified; recompile the bundle"
        )
    data = _read_member(bundle, name, MAX_FILE_BYTES)
    if hashlib.sha256(data).hexdigest() != expected:
        raise BundleError(
            f"{bundle}/{name} does not match the sha256 in its manifest (modified or corrupted); recompile the bundle"
        )
    if name.lower().endswith(".onnx"):  # whatever reads it next (a parser given its path, too) stays inside
        refuse_external_data(f"{bundle}/{name}", data)
    return data


def read_manifest(bundle: str | os.PathLike[str], verify: bool = True, trust: bool = False) -> Manifest:
    """The typed manifest of a bundle; with `verify`, also check that every listed file is intact; with `trust`,
    also that the trust policies accept its signature (runtime/trust.py), as loading and building do."""
    return read_manifest_bytes(Path(bundle), verify, trust)[1]


def read_manifest_bytes(bundle: Path, verify: bool = True, trust: bool = False) -> tuple[bytes, Manifest]:
    """The manifest's exact bytes (what a signature covers) and the typed manifest parsed from them."""
    if not bundle.is_dir():
        raise BundleError(f"{bundle} is not a directory; give the bundle directory `edgekit compile` wrote")
    try:
        raw = _read_member(bundle, MANIFEST, MAX_MANIFEST_BYTES)
        text = raw.decode("utf-8")
    except MissingFile:
        raise BundleError(
            f"{bundle} is not an edgekit bundle (no {MANIFEST}); create one with `edgekit compile`"
        ) from None
    except UnicodeDecodeError:
        raise BundleError(f"{bundle}/{MANIFEST} is not UTF-8 text; recompile the bundle") from None
    manifest = Manifest.from_dict(parse_json(text, f"{bundle}/{MANIFEST}"))
    if verify:
        verify_files(bundle, manifest)
    if trust:
        from edgekit.runtime.trust import check_trust

        check_trust(bundle, raw, dict(manifest.files), lambda: read_signature(bundle))
    return raw, manifest


def read_signature(bundle: Path) -> bytes | None:
    """The bundle's signature envelope, read as safely as its files; None when it has none."""
    from edgekit.runtime.signing import MAX_SIGNATURE_BYTES, SIGNATURE

    try:
        return _read_member(bundle, SIGNATURE, MAX_SIGNATURE_BYTES)
    except MissingFile:
        return None


def verify_files(bundle: Path, manifest: Manifest) -> None:
    for name in manifest.files:
        read_verified(bundle, manifest, name)


def unlisted_files(bundle: Path, manifest: Manifest) -> list[str]:
    """Files in the bundle directory that the manifest does not list: never loaded, never copied."""
    present = (p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() or p.is_symlink())
    return sorted(name for name in present if name not in (MANIFEST, SIGNATURE) and name not in manifest.files)
