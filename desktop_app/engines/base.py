"""What every engine shares: a cooperative cancel token."""

from __future__ import annotations

import threading
from typing import Generator, TypeVar

from desktop_app.core.errors import Cancelled


class CancelToken:
    """A thread-safe flag that engines check between yields (tokens, steps, tiles)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def reset(self) -> None:
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, waking early on cancel; True if cancelled."""
        return self._event.wait(timeout)


R = TypeVar("R")


def run_to_end(gen: Generator[object, None, R]) -> R:
    """Drive an engine generator to its end, dropping its progress events; return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
