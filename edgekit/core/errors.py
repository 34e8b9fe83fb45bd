"""The one exception type for a user's mistake.

The CLI prints an EdgekitError as a single `error: ...` line and exits with status 2. Anything else
that escapes is a bug in edgekit and keeps its traceback (exit 1).
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Bad input or an impossible request: the message says what is wrong and what to do."""


class ParityError(EdgekitError):
    """The exported model does not reproduce the PyTorch model's outputs; no bundle is written."""


class BundleError(EdgekitError):
    """A bundle is missing, from an incompatible schema, or its files do not match their hashes."""
