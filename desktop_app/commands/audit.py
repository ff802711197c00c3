"""`atelier audit verify [--json] [--dir DIR]` and `atelier audit export --since DATE --to FILE`."""

from __future__ import annotations

from pathlib import Path

from desktop_app.commands import emit_json
from desktop_app.core.errors import AtelierError


def _folder(args) -> Path:
    if getattr(args, "dir", None):
        return Path(args.dir)
    from desktop_app.core.audit import log_folder

    return log_folder()


def cmd_verify(args) -> int:
    from desktop_app.core.audit import verify

    folder = _folder(args)
    if not folder.is_dir():
        raise AtelierError(f"No audit log at {folder}.")
    d = verify(folder)
    if args.json:
        emit_json({k: d[k] for k in ("records", "ok", "first_bad")})
    elif d["ok"]:
        print(f"The audit log holds: {d['records']} records chained" + (" (a torn last record from a crash is "
              "not counted)." if d["torn_tail"] else "."))
    else:
        b = d["first_bad"]
        print(f"The audit log is BROKEN at {b['file']} line {b['line']}: {b['reason']} "
              f"({d['records']} records before it hold).")
    return 0 if d["ok"] else 1


def cmd_export(args) -> int:
    from desktop_app.core.audit import export

    to = Path(args.to)
    if to.suffix.lower() not in (".csv", ".json"):
        raise AtelierError(f"--to {to.name}: use a .csv or .json file name.")
    try:
        n = export(_folder(args), to, args.since)
    except ValueError as exc:
        raise AtelierError(f"--since {args.since!r}: use a date such as 2026-12-01 ({exc}).") from exc
    if getattr(args, "json", False):
        emit_json({"records": n, "to": str(to)})
    else:
        print(f"Wrote {n} records to {to}.")
    return 0
