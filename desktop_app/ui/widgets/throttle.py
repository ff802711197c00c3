"""The one coalescer for high-rate view updates (qutebrowser's ``misc/throttle.py`` in spirit):
streamed text, progress, download speeds, gallery thumbnails, search-as-you-type, status ticks.

Every view that updates faster than a person can read goes through a ``Coalescer``; the
architecture test refuses a bare ``QTimer(`` under ``ui/`` elsewhere, so a new view cannot repaint
once per token or per byte by accident.

Modes:
  ``coalesce``  pokes within ``interval_ms`` of the first one become one call at its end (at most
                one call per interval however often it is poked);
  ``debounce``  each poke restarts the wait: one call after the pokes stop (search as you type);
  ``repeat``    a steady tick while started (a stream flush, a rate label), until ``stop()``.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, QTimer

MODES = ("coalesce", "debounce", "repeat")


class Coalescer(QObject):
    def __init__(self, interval_ms: int, fn: Callable[[], None], parent: QObject | None = None,
                 mode: str = "coalesce") -> None:
        super().__init__(parent)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self._timer = QTimer(self)
        self._timer.setInterval(int(interval_ms))
        self._timer.setSingleShot(mode != "repeat")
        self._timer.timeout.connect(fn)

    def poke(self) -> None:
        """Ask for a call: merged with the pending one (coalesce), or pushing it back (debounce)."""
        if self.mode == "debounce" or not self._timer.isActive():
            self._timer.start()

    def start(self) -> None:
        """Start now (repeat: the ticking; otherwise the same as a fresh wait)."""
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def isActive(self) -> bool:  # noqa: N802 - reads like the QTimer it replaces
        return self._timer.isActive()

    def interval(self) -> int:
        return self._timer.interval()
