"""`atelier remotes add|list|rm`: the team servers (OpenAI API: vLLM, llama.cpp's server, Ollama,
another Atelier) whose models the app and `atelier run --remote` use (core/remotes.py)."""

from __future__ import annotations

import os
import sys

from desktop_app.commands import emit_json


def cmd_add(args) -> int:
    from desktop_app.core.remotes import add_server
    from desktop_app.engines.remote_chat import RemoteServer

    key = args.api_key or os.environ.get("ATELIER_REMOTE_KEY") or None
    entry = add_server(args.name, args.url, key)
    try:
        models = RemoteServer(entry["name"], entry["url"], key).models()
        note = f"{len(models)} model(s): {', '.join(models[:8])}"
    except Exception as exc:  # noqa: BLE001 - saved anyway: it may be down now
        models, note = [], f"saved, but not reachable now: {exc}"
    if args.json:
        emit_json({**entry, "api_key": bool(key), "models": models})
    else:
        print(f"Added {entry['name']} ({entry['url']}): {note}")
    return 0


def cmd_list(args) -> int:
    from desktop_app.core.remotes import get_key, list_servers
    from desktop_app.engines.remote_chat import RemoteServer

    rows = []
    for s in list_servers():
        row = {"name": s["name"], "url": s["url"], "api_key": bool(get_key(s["name"])), "models": [], "error": None}
        try:
            row["models"] = RemoteServer(s["name"], s["url"], get_key(s["name"])).models()
        except Exception as exc:  # noqa: BLE001 - a clear state per server
            row["error"] = str(exc)
        rows.append(row)
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        print("No servers. Add one with 'atelier remotes add NAME URL'.")
    for r in rows:
        state = f"{len(r['models'])} model(s)" if r["error"] is None else f"unreachable: {r['error']}"
        print(f"{r['name']}  {r['url']}  {state}")
        for m in r["models"]:
            print(f"    {m}  (remote)")
    return 0


def cmd_rm(args) -> int:
    from desktop_app.core.remotes import remove_server

    remove_server(args.name)
    if args.json:
        emit_json({"removed": args.name})
    else:
        print(f"Removed {args.name}.", file=sys.stderr)
    return 0
