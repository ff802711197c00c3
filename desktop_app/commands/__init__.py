"""CLI command implementations. Each ``cmd_*`` takes the argparse namespace and returns an exit code.

They run over the same Qt-free core as the GUI. Contract: exit 0 on success; on failure raise
AtelierError (cli.py prints one line on stderr, exit 1); with ``--json`` stdout holds exactly one
JSON object, printed last (use ``emit_json``); progress and streamed text go to stderr.
"""

from __future__ import annotations

import json
import sys


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, default=str) + "\n")
    sys.stdout.flush()
