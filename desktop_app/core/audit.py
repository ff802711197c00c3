"""A tamper-evident audit log of inference calls (issue 16), Qt-free.

Records are JSON lines in ``audit-YYYY-MM.jsonl`` files of one folder; each carries ``sha256``,
the digest of the record itself (its canonical JSON without that field: an edited line is found
at that line), and ``prev``, the previous record's ``sha256`` (the first one's is 64 zeros: a
deleted or reordered line breaks the chain where it was). Appends are serialised by a lock (threads) and an
``flock`` on the file (processes), written with one ``write`` of the whole line and ``fsync``:
a crash loses at most the record being written, and a torn last line is reported as such and
never read as a record. The log is written from the thread that finished the work, never the GUI
thread. ``verify`` checks every file in order; ``export`` writes CSV or JSON for auditors.
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
_lock = threading.Lock()


def _digest(rec: dict) -> str:
    body = {k: v for k, v in rec.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def _prev_of(line: bytes | None) -> str:
    if not line:
        return GENESIS
    try:
        return str(json.loads(line)["sha256"])
    except (ValueError, KeyError, TypeError):
        return GENESIS  # verify() names that line


def _files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("audit-*.jsonl"))


def _last_line(path: Path) -> bytes | None:
    """The last complete line of ``path`` (a torn tail after a crash is skipped)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block = min(size, 1 << 20)
            f.seek(size - block)
            data = f.read(block)
    except OSError:
        return None
    lines = data.split(b"\n")
    complete = [x for x in lines[:-1] if x.strip()]  # the part after the last newline is torn (or empty)
    return complete[-1] if complete else None


class AuditLog:
    def __init__(self, folder: str | Path, mode: str = "full") -> None:
        if mode not in ("off", "metadata", "full"):
            raise ValueError(f"audit mode must be off, metadata or full, not {mode!r}")
        self.folder, self.mode = Path(folder), mode

    def append(self, kind: str, model_id: str, model_sha256: str, params: dict, outcome: str, *,
               prompt: Any = None, reply: Any = None, counts: dict | None = None,
               duration_s: float = 0.0, extra: dict | None = None) -> dict | None:
        """One record (``kind``: chat, image, upscale, remove_bg, enhance); None when off."""
        if self.mode == "off":
            return None
        from desktop_app import __version__

        rec: dict[str, Any] = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "user": _user(), "app_version": __version__, "kind": kind, "model_id": model_id,
            "model_sha256": model_sha256, "params": params, "counts": counts or {},
            "duration_s": round(float(duration_s), 4), "outcome": outcome,
        }
        if self.mode == "full":
            rec["prompt"], rec["reply"] = prompt, reply
        else:
            rec["prompt_sha256"] = _text_digest(prompt)
            rec["reply_sha256"] = _text_digest(reply)
        if extra:
            rec.update(extra)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"audit-{dt.datetime.now(dt.timezone.utc):%Y-%m}.jsonl"
        with _lock, open(path, "ab") as f:
            _flock(f)
            try:
                _drop_torn_tail(f)
                prev_line = _last_line(path) or next((_last_line(p) for p in reversed(_files(self.folder))
                                                      if p != path and _last_line(p)), None)
                rec["prev"] = _prev_of(prev_line)
                rec["sha256"] = _digest(rec)
                line = json.dumps(rec, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            finally:
                _funlock(f)
        return rec


def _text_digest(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True) \
        if value is not None else ""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def log_folder() -> Path:
    """Where the log lives: the policy's ``audit.path``, else ``ATELIER_AUDIT_DIR``, else the data dir's
    ``audit`` folder."""
    from desktop_app.core.policy import current

    pol = current()
    if pol.audit_path:
        return Path(pol.audit_path).expanduser()
    if os.environ.get("ATELIER_AUDIT_DIR"):
        return Path(os.environ["ATELIER_AUDIT_DIR"]).expanduser()
    from desktop_app.core.paths import get_paths

    return get_paths(create=False).data / "audit"


def current_log() -> "AuditLog | None":
    """The log in force (the policy's mode, else the user's ``audit_mode`` setting); None when off.
    Raises AtelierError when it is on and cannot be written: under an audit, no inference runs
    unrecorded."""
    from desktop_app.core.errors import AtelierError
    from desktop_app.core.settings import Settings

    mode = Settings().get("audit_mode")
    if mode not in ("metadata", "full"):
        return None
    folder = log_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise AtelierError(f"The audit log at {folder} cannot be written ({exc.strerror or exc}); nothing runs "
                           "unrecorded while the audit is on.") from exc
    return AuditLog(folder, mode)


class Call:
    """One inference call: made (and the log checked) before the work starts, ``end``ed by the thread
    that finished it. ``Call.start`` returns one that records nothing when the audit is off."""

    def __init__(self, log: "AuditLog | None", kind: str, model_id: str, model_sha256: str, params: dict,
                 prompt: Any) -> None:
        import time

        self.log, self.kind, self.model_id, self.model_sha256 = log, kind, model_id, model_sha256
        self.params, self.prompt, self.t0, self.ended = params, prompt, time.monotonic(), False

    @classmethod
    def start(cls, kind: str, model_id: str, model_sha256: str, params: dict, prompt: Any) -> "Call":
        return cls(current_log(), kind, model_id, model_sha256, params, prompt)

    def end(self, outcome: str, reply: Any = None, counts: dict | None = None, extra: dict | None = None) -> None:
        import time

        if self.ended:
            return
        self.ended = True
        if self.log is not None:
            self.log.append(self.kind, self.model_id, self.model_sha256, self.params, outcome, prompt=self.prompt,
                            reply=reply, counts=counts, duration_s=time.monotonic() - self.t0, extra=extra)


def _drop_torn_tail(f) -> None:
    """A record torn by a crash (no newline at the end) was never written: cut it before the next."""
    size = os.fstat(f.fileno()).st_size
    if not size:
        return
    with open(f.name, "rb") as r:
        r.seek(max(0, size - (1 << 20)))
        data = r.read()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n")
    keep = size - len(data) + cut + 1 if cut >= 0 else (size - len(data) if size > len(data) else 0)
    os.truncate(f.name, keep)
    f.seek(0, os.SEEK_END)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name (a service): its id
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def _flock(f) -> None:
    try:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    except ImportError:  # Windows: msvcrt locks a byte range
        import msvcrt

        msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)


def _funlock(f) -> None:
    try:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except ImportError:
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)


def verify(folder: str | Path) -> dict:
    """{"records": N, "ok": bool, "first_bad": None | {"file", "line", "reason"}, "torn_tail": bool}."""
    prev, n = GENESIS, 0
    files = _files(Path(folder))
    for fi, path in enumerate(files):
        data = path.read_bytes()
        lines = data.split(b"\n")
        torn = lines[-1] != b""  # no newline at the end: the record being written when it crashed
        body = lines[:-1]
        for i, raw in enumerate(body, 1):
            bad = None
            try:
                rec = json.loads(raw)
            except ValueError:
                bad = "not a JSON record (edited, or two records run together)"
                rec = None
            if rec is not None and not isinstance(rec, dict):
                bad = "not a record"
            elif rec is not None and rec.get("sha256") != _digest(rec):
                bad = "this record was edited (its digest does not match it)"
            elif rec is not None and rec.get("prev") != prev:
                bad = "the chain breaks here: the record before it was deleted, or records were moved"
            if bad:
                return {"records": n, "ok": False, "first_bad": {"file": str(path), "line": i, "reason": bad},
                        "torn_tail": False}
            prev, n = rec["sha256"], n + 1
        if torn:
            last_file = fi == len(files) - 1
            if not last_file:
                return {"records": n, "ok": False, "first_bad": {"file": str(path), "line": len(body) + 1,
                        "reason": "a torn record in the middle of the log"}, "torn_tail": False}
            return {"records": n, "ok": True, "first_bad": None, "torn_tail": True}
    return {"records": n, "ok": True, "first_bad": None, "torn_tail": False}


def export(folder: str | Path, to: str | Path, since: str | None = None) -> int:
    """Write the records (from ``since``, an ISO date) to ``to`` (.csv or .json); returns how many."""
    cut = dt.datetime.fromisoformat(since).replace(tzinfo=dt.timezone.utc) if since else None
    recs = []
    for path in _files(Path(folder)):
        for raw in path.read_bytes().split(b"\n"):
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if cut is not None and dt.datetime.fromisoformat(rec["time"]) < cut:
                continue
            recs.append(rec)
    to = Path(to)
    if to.suffix.lower() == ".csv":
        keys = sorted({k for r in recs for k in r})
        with open(to, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            for r in recs:
                w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                            for k, v in r.items()})
    else:
        to.write_text(json.dumps(recs, ensure_ascii=False, indent=1), encoding="utf-8")
    return len(recs)
