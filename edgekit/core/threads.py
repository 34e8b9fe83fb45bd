"""How many CPU threads "0" means."""

from __future__ import annotations

import os

from edgekit.core.errors import EdgekitError

MAX_THREADS = 4096  # more than any machine edgekit targets; a larger number is a typo or an attack


def resolve_threads(threads: int) -> int:
    """0 means every core this process may use."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= MAX_THREADS:
        raise EdgekitError(f"threads must be a whole number within 0..{MAX_THREADS} (0 = all cores), not {threads!r}")
    if threads > 0:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
