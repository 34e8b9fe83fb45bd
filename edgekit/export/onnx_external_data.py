"""A user's ONNX file that keeps its weights in other files (`onnx.save_model(..., save_as_external_data=True)`,
the form several exporters write): checked, then taken in, so the bundle's model file carries everything.

Every location must name a regular file in the model's folder or below it: not absolute, no `..`, no symbolic
link on the way, and long enough for the bytes the model claims. Only then does onnx read them (with its own
checks as well), and the weights go inside the model file edgekit ships, its hash covering them; the data
files' own hashes are recorded as part of the source.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath

from edgekit.core.errors import EdgekitError
from edgekit.core.onnx_external import ExternalTensor, NotOnnx, external_tensors

# One protobuf message holds at most 2 GiB: a model whose weights are larger cannot travel inside its file.
MAX_INLINE_BYTES = (1 << 31) - 1
_RESAVE = "re-save it with onnx.save_model(model, 'model.onnx', save_as_external_data=True, location='model.data')"


def external_data_files(path: Path) -> dict[str, str]:
    """The external data files `path` uses, checked (EdgekitError otherwise), by location → sha256; {} for a
    self-contained file."""
    try:
        tensors = external_tensors(path.read_bytes())
    except NotOnnx:
        return {}  # onnx's own reader says what is wrong with it
    if not tensors:
        return {}
    claimed: dict[str, int] = {}
    for tensor in tensors:
        end = _claimed_end(path, tensor)
        claimed[tensor.location] = max(claimed.get(tensor.location, 0), end)
    if sum(claimed.values()) > MAX_INLINE_BYTES:
        raise EdgekitError(
            f"{path}: its external data is {sum(claimed.values()) / 2**30:.1f} GiB, more than the 2 GiB one ONNX "
            "file can hold, and edgekit bundles carry their weights inside the model file; compile the PyTorch "
            "checkpoint instead"
        )
    return {location: _checked_hash(path, location) for location in claimed}


def _claimed_end(path: Path, tensor: ExternalTensor) -> int:
    where = f"{path}: tensor {tensor.name!r} keeps its data in {tensor.location!r}"
    location = tensor.location
    if not location or "\x00" in location:
        raise EdgekitError(f"{where}, which names no file; {_RESAVE}")
    posix, windows = PurePosixPath(location), PureWindowsPath(location)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or location.startswith("\\"):
        raise EdgekitError(f"{where}: an absolute path; external data must lie in the model's folder: {_RESAVE}")
    if ".." in posix.parts or ".." in windows.parts:
        raise EdgekitError(f"{where}, outside the model's folder; external data must lie beside the model: {_RESAVE}")
    try:
        offset = int(tensor.offset or 0)
        length = int(tensor.length) if tensor.length else None
    except ValueError:
        raise EdgekitError(
            f"{where} at offset {tensor.offset!r}, length {tensor.length!r}: not whole numbers"
        ) from None
    if offset < 0 or (length is not None and length < 0):
        raise EdgekitError(f"{where} at a negative offset or length; {_RESAVE}")
    size = _regular_file(path, location).st_size
    end = size if length is None else offset + length
    if end > size or offset > size:
        raise EdgekitError(
            f"{where}, bytes {offset}..{end}, but that file has {size} bytes: it is truncated or belongs to another "
            "model; copy the model together with its data file"
        )
    return end


def _regular_file(path: Path, location: str) -> os.stat_result:
    """The data file's status, reached from the model's folder one component at a time, no link followed."""
    current = path.parent
    for part in PurePosixPath(location).parts:
        current = current / part
        try:
            info = os.lstat(current)
        except OSError:
            raise EdgekitError(f"{path}: its external data file {location!r} does not exist beside it") from None
        if stat.S_ISLNK(info.st_mode):
            raise EdgekitError(
                f"{path}: its external data {location!r} goes through a symbolic link ({current}); copy the data "
                "file itself beside the model"
            )
    if not stat.S_ISREG(info.st_mode):
        raise EdgekitError(f"{path}: its external data {location!r} is not a regular file")
    return info


def _checked_hash(path: Path, location: str) -> str:
    digest = hashlib.sha256()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path.parent / location, flags)
    with os.fdopen(descriptor, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
