"""The one exception type for a user's mistake.

The CLI prints an EdgekitError as a single `error: ...` line and exits with status 2, and so it does
for the machine's own failures a user can act on (`environment_problem`: a full disk, no permission, too
many open files). Anything else that escapes is a bug in edgekit and keeps its traceback (exit 1).
"""

from __future__ import annotations

import errno


class EdgekitError(Exception):
    """Bad input or an impossible request: the message says what is wrong and what to do."""


class ParityError(EdgekitError):
    """The exported model does not reproduce the PyTorch model's outputs; no bundle is written."""


class BundleError(EdgekitError):
    """A bundle is missing, from an incompatible schema, or its files do not match their hashes."""


# Failures of the machine around edgekit that the user can act on: exit 2 with what to do, not a traceback.
_ENVIRONMENT_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "permission denied: check the permissions or write elsewhere",
    errno.EPERM: "operation not permitted: check the permissions or write elsewhere",
    errno.EMFILE: "too many open files: raise the limit (`ulimit -n`) or pass fewer files at once",
    errno.ENFILE: "the system has too many open files: close some programs and retry",
    errno.EFBIG: "the file grew past this process's file-size limit (`ulimit -f`)",
    errno.EIO: "an input/output error: the disk or the network file system is failing",
    errno.ENAMETOOLONG: "a file name is too long: choose a shorter path",
}


def environment_problem(exc: OSError) -> str | None:
    """The one-line message for an OSError that the user's machine caused, or None for any other (a bug)."""
    hint = _ENVIRONMENT_HINTS.get(exc.errno) if exc.errno is not None else None
    if hint is None:
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{hint}{where}"
