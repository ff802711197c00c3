"""How this process runs Python code in a child: a source or wheel install runs ``python -m ...``;
a frozen build (PyInstaller, ``installers/freeze/``) has no Python, so its console executable
``atelier`` runs the child itself when given ``--atelier-child`` first (see ``run_child_argv``).
Qt-free; the engine hosts and the doctor's probes use it."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

CHILD_FLAG = "--atelier-child"


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def frozen_cli() -> Path:
    """The frozen console executable beside this one (``atelier-gui`` has no console on Windows)."""
    exe = Path(sys.executable)
    cli = exe.with_name("atelier.exe" if os.name == "nt" else "atelier")
    return cli if cli.is_file() else exe


def python_argv(*args: str) -> list[str]:
    """The command line that runs ``python ARGS`` (``-m module`` or ``-c code``) here."""
    if is_frozen():
        return [str(frozen_cli()), CHILD_FLAG, *args]
    return [sys.executable, *args]


def run_child_argv(argv: list[str]) -> int | None:
    """In a frozen executable: ``--atelier-child -m MODULE`` / ``--atelier-child -c CODE`` runs that
    as ``python`` would and returns its exit status; None when argv is not a child's."""
    if len(argv) < 3 or argv[0] != CHILD_FLAG or argv[1] not in ("-m", "-c"):
        return None
    sys.argv = [argv[2], *argv[3:]]
    try:
        if argv[1] == "-m":
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        else:
            exec(compile(argv[2], "<atelier-child>", "exec"), {"__name__": "__main__"})  # noqa: S102 - our own probe code
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
