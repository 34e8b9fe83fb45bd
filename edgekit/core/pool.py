"""A pool of objects that only one thread at a time may use (an inference request, an interpreter)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Pool(Generic[T]):
    """Hands each caller an object no other thread holds, making one on demand up to `limit`; beyond that
    callers wait. The first object is made eagerly so that a load error surfaces at load time."""

    def __init__(self, make: Callable[[], T], limit: int) -> None:
        self._make = make
        self._limit = max(1, limit)
        self._idle: list[T] = [make()]
        self._count = 1
        self._ready = threading.Condition()

    @contextlib.contextmanager
    def take(self) -> Iterator[T]:
        item = self._acquire()
        try:
            yield item
        finally:
            with self._ready:
                self._idle.append(item)
                self._ready.notify()

    def _acquire(self) -> T:
        with self._ready:
            while not self._idle and self._count >= self._limit:
                self._ready.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return self._make()  # outside the lock: making one can take a while
        except BaseException:
            with self._ready:
                self._count -= 1
                self._ready.notify()
            raise
