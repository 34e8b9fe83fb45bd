"""Progress on stderr, so stdout stays clean for --json."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """Stage messages and progress bars; `enabled=False` for library use and tests."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def note(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)

    def bar(self, iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
        if not self.enabled:
            yield from iterable
            return
        from tqdm import tqdm

        yield from tqdm(
            iterable,
            desc=desc,
            total=total,
            unit=unit,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
            disable=None,  # None: no bar when stderr is not a terminal (CI logs, pipes)
        )


QUIET = Progress(enabled=False)
