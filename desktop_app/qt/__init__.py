"""The only layer that bridges the Qt-free core/engines to the GUI: threads, workers, signals.

Data flows ui -> qt -> engines/core, never back: nothing below imports from here.
"""

import sys as _sys


def _immortalize_singletons() -> None:
    """Work around a PySide6 6.12 refcount bug on CPython < 3.12 (seen here, 6.12.0 + 3.11.7).

    Every Qt method returning void (``QLabel.setText``, ``QTimer.start``, ``processEvents`` …) hands
    back ``None`` without a new reference, and ``Signal.emit`` does the same with ``False``: each
    call drops the singleton's refcount by one, and after some thousands of calls CPython aborts
    ("Fatal Python error: none_dealloc" / "bool_dealloc"). CPython 3.12+ makes them immortal,
    which is what the bindings assume; do the same here by giving them a huge refcount.
    Added by the studio helper (see its report); remove once PySide6 is fixed or Python >= 3.12.
    """
    if _sys.version_info >= (3, 12) or _sys.implementation.name != "cpython" or hasattr(_sys, "gettotalrefcount"):
        return
    import ctypes

    for obj in (None, True, False, Ellipsis, NotImplemented):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40  # ob_refcnt is the first field


_immortalize_singletons()
