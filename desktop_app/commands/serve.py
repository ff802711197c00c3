"""``atelier serve [--host 127.0.0.1] [--port 8765] [--api-key KEY]``: the installed chat models
through the OpenAI API (desktop_app/server). Loopback by default; any other address needs an API
key (refused without one). ``ATELIER_API_KEY`` gives the key without putting it on the command
line (where other users of the machine can read it)."""

from __future__ import annotations

import os
import sys

from desktop_app.core.errors import AtelierError
from desktop_app.core.loopback import is_loopback


def build(host: str, api_key: str | None):
    from desktop_app.core.library import Library
    from desktop_app.core.starter import ensure_starter_registered
    from desktop_app.server.app import ServerState, create_app
    from desktop_app.server.worker import ChatWorker

    if not is_loopback(host) and not api_key:
        raise AtelierError(f"Listening on {host} (not this machine only) needs an API key: pass --api-key KEY "
                           "or set ATELIER_API_KEY.")
    lib = Library()
    ensure_starter_registered(lib)
    from desktop_app.core.memory_broker import MemoryBroker

    from desktop_app.server.worker import ImageWorker

    state = ServerState(lib, api_key, ChatWorker(library=lib, broker=MemoryBroker()), ImageWorker(lib))
    return state, create_app(state)


def cmd_serve(args) -> int:
    import uvicorn

    key = args.api_key or os.environ.get("ATELIER_API_KEY") or None
    if not (0 < args.port < 65536):
        raise AtelierError(f"--port must be 1-65535, not {args.port}.")
    state, app = build(args.host, key)
    print(f"Atelier serves the OpenAI API at http://{args.host}:{args.port}/v1"
          + (" (API key required)" if key else "") + "; Ctrl+C stops.", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    finally:
        state.worker.stop()
        state.images.stop()
    return 0
