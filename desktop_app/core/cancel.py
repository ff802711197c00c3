"""The one cancel token every layer shares (engines, downloads, imports, the Qt workers)."""

from __future__ import annotations

import threading

from desktop_app.core.errors import Cancelled


class CancelToken:
    """A thread-safe flag that work checks between steps (tokens, denoising steps, tiles, chunks).

    ``event``: share an existing ``threading.Event`` (an engine child's one cancel flag), so that
    every piece of work that holds a token sees the same cancel.
    """

    def __init__(self, event: threading.Event | None = None) -> None:
        self._event = event if event is not None else threading.Event()

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
