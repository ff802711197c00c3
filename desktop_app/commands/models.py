"""`atelier models list|pull|import|discover|rm|search|files|catalog` over desktop_app.hub.

Contract: progress on stderr; with --json exactly one JSON value on stdout, printed last.
"""

from __future__ import annotations

import sys
import time

from desktop_app.commands import emit_json
from desktop_app.core.errors import AtelierError
from desktop_app.core.library import Library


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def _hw():
    from desktop_app.core.hardware import detect_hardware

    return detect_hardware()


# ---------------------------------------------------------------------------------------
def cmd_list(args) -> int:
    from desktop_app.core.starter import ensure_starter_registered

    lib = Library()
    ensure_starter_registered(lib)
    recs = lib.list(task=getattr(args, "task", None))
    remote = _remote_models() if getattr(args, "task", None) in (None, "chat") else []
    if args.json:
        emit_json([r.to_dict() for r in recs] + remote)
        return 0
    if not recs:
        print("No models installed. Try 'atelier models catalog' or 'atelier models discover'.")
        return 0
    w = max(len(r.id) for r in recs)
    for r in recs:
        where = "" if r.managed else "  (in place)"
        print(f"{r.id:<{w}}  {r.task:<18} {r.format:<11} {_size(r.size_bytes):>9}  {r.path}{where}")
    for m in remote:
        print(f"{m['id']:<{w}}  {'chat':<18} {'remote':<11} {'':>9}  on {m['server']} ({m['url']})")
    return 0


def _remote_models() -> list[dict]:
    """The models of the team servers the user added (atelier remotes), each marked remote; a
    server that does not answer is one line on stderr."""
    from desktop_app.core.remotes import get_key, list_servers
    from desktop_app.engines.remote_chat import RemoteServer

    out = []
    for s in list_servers():
        try:
            ids = RemoteServer(s["name"], s["url"], get_key(s["name"])).models()
        except Exception as exc:  # noqa: BLE001 - listed as unreachable, the rest still lists
            print(f"atelier: {exc}", file=sys.stderr)
            continue
        out += [{"id": i, "task": "chat", "format": "remote", "remote": True, "server": s["name"], "url": s["url"]}
                for i in ids]
    return out


class _StderrProgress:
    """One updating line on stderr (a plain line per second when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.last_state = ""

    def __call__(self, ev) -> None:
        now = time.monotonic()
        if ev.state == self.last_state and ev.state == "downloading" and now - self.last < (0.2 if self.tty else 1.0):
            return
        self.last, self.last_state = now, ev.state
        pct = f"{100 * ev.fraction:5.1f}%" if ev.fraction is not None else "  ?  "
        speed = f"{ev.speed_bps / 1e6:6.1f} MB/s" if ev.speed_bps else ""
        eta = f"ETA {int(ev.eta_s // 60)}:{int(ev.eta_s % 60):02d}" if ev.eta_s else ""
        files = f"[{ev.file_index}/{ev.file_count}] " if ev.file_count > 1 else ""
        line = f"{ev.state:<11} {files}{ev.filename}  {pct}  {_size(ev.bytes_done)} / {_size(ev.bytes_total)}  {speed}  {eta}"
        if self.tty:
            sys.stderr.write("\r" + line[:150].ljust(150))
            if ev.state == "done":
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        message = getattr(ev, "message", "")
        if message and ev.state in ("unverified", "retrying", "done") and message != getattr(self, "_said", None):
            self._said = message
            sys.stderr.write(("\n" if self.tty else "") + message + "\n")
        sys.stderr.flush()


def cmd_pull(args) -> int:
    from desktop_app.hub.pull import pull

    rec = pull(args.repo, args.file, revision=args.revision, accept_license=args.accept_license,
               allow_unverified=getattr(args, "allow_unverified", False), on_progress=_StderrProgress())
    verified = rec.extra.get("verified", True) is not False
    if args.json:
        emit_json(rec.to_dict())
    elif verified:
        print(f"Installed {rec.id} ({_size(rec.size_bytes)}, checksum verified) at {rec.path}")
    else:
        print(f"Installed {rec.id} ({_size(rec.size_bytes)}, NOT VERIFIED: the hub gave no checksum) at {rec.path}")
    return 0


def cmd_export(args) -> int:
    from desktop_app.hub.packs import export_pack

    pack = export_pack(args.ids, args.to, progress=lambda rel: print(f"copying {rel}", file=sys.stderr))
    if args.json:
        emit_json({"pack": str(args.to), "models": [m["id"] for m in pack["models"]],
                   "files": sum(len(m["files"]) for m in pack["models"]),
                   "bytes": sum(m["size_bytes"] for m in pack["models"])})
    else:
        print(f"Wrote {len(pack['models'])} model(s) and pack.json to {args.to} "
              f"({_size(sum(m['size_bytes'] for m in pack['models']))}).")
    return 0


def cmd_import(args) -> int:
    from pathlib import Path

    from desktop_app.hub.importer import import_path
    from desktop_app.hub.packs import PACK_FILE, import_pack

    if (Path(args.path).expanduser() / PACK_FILE).is_file():  # a model pack: verified whole, then all of it
        skipped: list = []
        recs = import_pack(args.path, skipped=skipped)
        if args.json:
            emit_json({"imported": [r.to_dict() for r in recs], "already_installed": [e.record.id for e in skipped]})
        else:
            for r in recs:
                print(f"Imported {r.id} ({r.task}, {r.format}, {_size(r.size_bytes)}) from the pack: verified.")
            for e in skipped:
                print(str(e))
        return 0
    from desktop_app.core.errors import AlreadyInstalled

    try:
        rec = import_path(args.path, copy=args.copy, allow_pickle=True if args.allow_pickle else None)
    except AlreadyInstalled as exc:  # not a failure: the model is there, once
        if args.json:
            emit_json({**exc.record.to_dict(), "already_installed": True})
        else:
            print(str(exc))
        return 0
    if args.json:
        emit_json(rec.to_dict())
    else:
        how = "copied into the models folder" if rec.managed else "registered in place"
        print(f"Imported {rec.id} ({rec.task}, {rec.format}, {_size(rec.size_bytes)}): {how}.")
    return 0


def cmd_discover(args) -> int:
    from desktop_app.hub.discovery import discover

    report = discover(extra_dirs=args.dir)
    if args.json:
        emit_json(report.to_dict())
        return 0
    for r in report.added:
        print(f"added  {r.id}  ({r.extra.get('app', '')}, {_size(r.size_bytes)})  {r.path}")
    for s in report.skipped:
        print(f"skip   {s.path}: {s.reason}", file=sys.stderr)
    print(f"{len(report.found)} model(s) found, {len(report.added)} newly registered "
          f"(searched: {', '.join(report.searched) or 'no known model folders exist'}).")
    return 0


def cmd_rm(args) -> int:
    from desktop_app.hub.importer import remove_model

    res = remove_model(args.id)
    if args.json:
        emit_json(res.to_dict())
    elif res.deleted:
        print(f"Removed {res.record.id}: {_size(res.bytes_freed)} ({res.bytes_freed} bytes) freed.")
    else:
        print(f"Removed {res.record.id} from the library; 0 bytes freed ({res.note}: {res.record.path}).")
    return 0


def cmd_search(args) -> int:
    from desktop_app.hub.client import HubClient

    results = HubClient().search(args.text, task=args.task, limit=args.limit)
    if args.json:
        emit_json([r.to_dict() for r in results])
        return 0
    if not results:
        print("Nothing found on the hub.")
    for r in results:
        gated = "  (gated)" if r.gated else ""
        print(f"{r.repo_id:<60} {r.downloads:>10} downloads  {r.pipeline_tag or r.library_name}{gated}")
    return 0


def cmd_files(args) -> int:
    from desktop_app.hub.catalog import choose_best_gguf, fit_image_size, fit_llm_size
    from desktop_app.hub.client import HubClient

    info = HubClient().repo_info(args.repo, args.revision)
    hw = _hw()
    rows = []
    for f in info.files:
        fit = None
        if f.size and f.name.lower().endswith(".gguf") and "mmproj" not in f.name.lower():
            fit = fit_llm_size(f.size, hw)
        elif f.size and f.name.endswith(".safetensors") and "/" not in f.name and f.size > 100e6:
            fit = fit_image_size(f.size, hw)
        d = f.to_dict()
        d["fit"] = fit.to_dict() if fit else None
        rows.append(d)
    best = choose_best_gguf([(f.name, f.size or 0) for f in info.gguf_files], hw) if info.gguf_files else None
    if args.json:
        emit_json({"repo_id": info.repo_id, "sha": info.sha, "gated": info.gated, "license": info.license,
                   "diffusers": info.is_diffusers, "best": best, "files": rows})
        return 0
    print(f"{info.repo_id} @ {info.sha[:12]}  licence: {info.license or '?'}{'  (gated)' if info.gated else ''}")
    for d in rows:
        mark = "*" if d["name"] == best else " "
        badge = d["fit"]["badge"] if d["fit"] else ""
        print(f"{mark} {d['name']:<60} {_size(d['size']):>9}  {badge}")
    if best:
        print(f"* best quantization for this machine: {best}")
    return 0


def cmd_catalog(args) -> int:
    from desktop_app.hub.catalog import load_catalog

    cat = load_catalog()
    lib = Library()
    rows = cat.view(_hw(), task=args.task, fits_only=args.fits, installed_ids=[r.id for r in lib.list()])
    if args.json:
        emit_json([r.to_dict() for r in rows])
        return 0
    if not rows:
        raise AtelierError("No catalog entry matches (try without --fits).")
    for r in rows:
        e = r.entry
        mark = "*" if r.recommended else " "
        exact = "" if e.size_exact else "~"
        lic = f"  [{e.license}{', accept first' if e.needs_acceptance else ''}]"
        print(f"{mark} {e.family:<34} {e.quantization or e.format:<8} {exact}{_size(e.size_bytes):>9}  "
              f"{r.fit.badge:<28} {e.repo_id}{lic}{'  installed' if r.installed else ''}")
    print("* = the quantization pre-selected for this machine; ~ = approximate size (exact after a refresh)")
    return 0
