"""Logging to a rotating file in the log dir. Prompts and replies are never logged."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from desktop_app.core.paths import get_paths

_configured = False


def log_file():
    return get_paths().logs / "atelier.log"


def setup_logging(debug: bool = False, console: bool = False) -> None:
    global _configured
    root = logging.getLogger()
    if _configured:
        return
    _configured = True
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # A log write that fails (full disk, read-only folder) must never print a traceback of its own.
    logging.raiseExceptions = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    try:
        fh = logging.handlers.RotatingFileHandler(log_file(), maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    except OSError:
        # no log file (read-only or full folder): stay quiet rather than let logging's last-resort
        # handler print warnings and tracebacks on stderr; storage_problem() tells the user once
        root.addHandler(logging.NullHandler())
    if console and sys.stderr is not None:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        root.addHandler(sh)
