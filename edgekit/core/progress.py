"""Progress on stderr, so stdout stays clean for --json."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

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

    def counter(self, total: int, desc: str, unit: str = "it") -> Counter:
        """A bar updated by hand, with running statistics (loss, accuracy) shown beside it."""
        if not self.enabled:
            return Counter(None)
        from tqdm import tqdm

        return Counter(tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, disable=None))


class Counter:
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, n: int = 1, **stats: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix(stats, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


QUIET = Progress(enabled=False)
