"""What every engine shares: a cooperative cancel token."""

from __future__ import annotations

import threading

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
