"""Entry point of the frozen windowed executable ``atelier-gui`` (no console window on Windows)."""
import os
import sys

# A windowed build has no standard streams on Windows (sys.stdout is None): give writers a sink.
for name in ("stdout", "stderr"):
    if getattr(sys, name) is None:
        setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))

from desktop_app.cli import gui_main  # noqa: E402

sys.exit(gui_main())
