"""Entry point of the frozen console executable ``atelier`` (the CLI, and the engine children)."""
import sys

from desktop_app.core.runtime import run_child_argv

code = run_child_argv(sys.argv[1:])
if code is None:
    from desktop_app.cli import main

    code = main()
sys.exit(code)
