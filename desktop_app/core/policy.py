"""The administrator's policy (issue 16), Qt-free: a machine-wide TOML file the app obeys.

Where it lives (outside the user's reach): Linux ``/etc/atelier/policy.toml``, Windows
``%ProgramData%\\Atelier\\policy.toml``, macOS ``/Library/Application Support/Atelier/policy.toml``;
``ATELIER_POLICY`` names another file (tests, a site's own layout). No file: no policy, and the
user's settings rule. The keys (docs/policy.example.toml)::

    offline = true                     # the offline switch forced on; the hub hidden
    allowed_models = ["<sha256>", ...]  # or "library-id:<sha256>"; anything else cannot be loaded
    model_dirs = ["/srv/atelier/models"]  # read-only folders registered at start-up
    allow_import = false
    allow_pickle = false
    [history]
    mode = "keep"                      # keep | private_only (every chat private: never written)
    retain_days = 90                   # older conversations deleted at start-up (and that logged)
    [audit]
    mode = "full"                      # off | metadata | full
    path = "/var/log/atelier"

A file that is there but cannot be read or parsed, or holds a key of the wrong type, is never
ignored: :func:`current` returns the most restrictive policy (offline, no model approved, no
import, no pickle, private chats only, full audit in the app's own folder) with ``error`` saying
what is wrong, and the app and the CLI show that line. Unknown keys are reported the same way
(a misspelt ``alowed_models`` must not silently approve everything).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_app.core.errors import AtelierError

HISTORY_MODES = ("keep", "private_only")
AUDIT_MODES = ("off", "metadata", "full")
_TOP_KEYS = {"offline", "allowed_models", "model_dirs", "allow_import", "allow_pickle", "history", "audit"}


class NotApproved(AtelierError):
    """A model the administrator's policy does not list in ``allowed_models``."""


class PolicyLocked(AtelierError):
    """A setting the administrator's policy fixes."""


def default_path() -> Path:
    if os.environ.get("ATELIER_POLICY"):
        return Path(os.environ["ATELIER_POLICY"]).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "Atelier" / "policy.toml"
    if sys.platform == "darwin":
        return Path("/Library/Application Support/Atelier/policy.toml")
    return Path("/etc/atelier/policy.toml")


@dataclass(frozen=True)
class Policy:
    """What the policy fixes; ``None`` where it is silent (the user's setting rules)."""

    path: str = ""
    present: bool = False
    error: str = ""  # a malformed file: why (the policy is then the most restrictive one)
    offline: bool | None = None
    allowed_models: tuple[str, ...] | None = None  # lower-case digests (ids, where given, in allowed_ids)
    allowed_ids: tuple[str, ...] = ()
    model_dirs: tuple[str, ...] = ()
    allow_import: bool | None = None
    allow_pickle: bool | None = None
    history_mode: str | None = None
    retain_days: int | None = None
    audit_mode: str | None = None
    audit_path: str = ""

    @property
    def source(self) -> str:
        return f"your administrator's policy ({self.path})"

    # settings it fixes ---------------------------------------------------------------------
    def locked(self) -> dict[str, Any]:
        """{setting key: the value the policy fixes} (core/settings.py OPTIONS keys)."""
        out: dict[str, Any] = {}
        if self.offline is not None:
            out["offline"] = self.offline
            if self.offline:  # with no network, the hub settings mean nothing: shown locked
                out["hf_endpoint"] = ""
                out["proxy"] = ""
        if self.allow_pickle is not None:
            out["allow_pickle"] = self.allow_pickle
        if self.audit_mode is not None:
            out["audit_mode"] = self.audit_mode
        return out

    def reason(self, key: str) -> str:
        """Why ``key`` cannot be changed, in words ('' when the policy leaves it to the user)."""
        if key not in self.locked():
            return ""
        return f"Set by {self.source}." if not self.error else f"Locked: {self.error}"

    @property
    def imports_allowed(self) -> bool:
        return self.allow_import is not False

    @property
    def private_only(self) -> bool:
        return self.history_mode == "private_only"

    # models --------------------------------------------------------------------------------
    @property
    def restricts_models(self) -> bool:
        return self.allowed_models is not None

    def approves(self, sha256: str) -> bool:
        """The digest is what binds (a library id in ``id:digest`` is a note for people)."""
        return self.allowed_models is None or (sha256 or "").lower() in self.allowed_models

    def check_model(self, path: str | Path, model_id: str = "", sha256: str = "", token=None) -> str:
        """The model's digest when the policy lets it be loaded; else raise :class:`NotApproved`.
        Hashes the file (or folder) only when the policy lists models and no digest is known."""
        if self.allowed_models is None:
            return sha256
        digest = (sha256 or "").lower() or model_digest(path, token)
        if not self.approves(digest):
            name = model_id or Path(path).name
            why = self.error and f" (the policy file is not valid: {self.error})"
            raise NotApproved(f"{name} is not approved by your administrator{why}: its sha256 {digest[:12]}… is not "
                              f"in allowed_models of {self.path}.")
        return digest


RESTRICTIVE_DEFAULTS = {"offline": True, "allowed_models": (), "allow_import": False, "allow_pickle": False,
                        "history_mode": "private_only", "audit_mode": "full"}


def _restrictive(path: Path, error: str) -> Policy:
    return Policy(path=str(path), present=True, error=error, **RESTRICTIVE_DEFAULTS)


def _want(value: Any, kind: type | tuple, what: str) -> Any:
    if kind is bool and not isinstance(value, bool) or kind is int and (
            not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{what} must be {'true or false' if kind is bool else 'a whole number'}, not {value!r}"[:160])
    if kind is list and not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
        raise ValueError(f"{what} must be a list of texts, not {value!r}"[:160])
    if kind is str and not isinstance(value, str):
        raise ValueError(f"{what} must be text, not {value!r}"[:160])
    return value


def parse(text: str, path: str | Path = "policy.toml") -> Policy:
    """A Policy from the file's text; raises ValueError (one line) when it is malformed."""
    import tomllib

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from exc
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    kw: dict[str, Any] = {"path": str(path), "present": True}
    for key in ("offline", "allow_import", "allow_pickle"):
        if key in raw:
            kw[key] = _want(raw[key], bool, key)
    if "allowed_models" in raw:
        digests, ids = [], []
        for entry in _want(raw["allowed_models"], list, "allowed_models"):
            mid, _, digest = entry.strip().rpartition(":")
            digest = digest.lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"allowed_models: {entry[:80]!r} is not a sha256 digest (64 hex digits, "
                                 "or library-id:digest)")
            digests.append(digest)
            ids.append(mid)
        kw["allowed_models"], kw["allowed_ids"] = tuple(digests), tuple(ids)
    if "model_dirs" in raw:
        kw["model_dirs"] = tuple(_want(raw["model_dirs"], list, "model_dirs"))
    for table, keys in (("history", {"mode", "retain_days"}), ("audit", {"mode", "path"})):
        sub = raw.get(table, {})
        if not isinstance(sub, dict):
            raise ValueError(f"[{table}] must be a table")
        extra = sorted(set(sub) - keys)
        if extra:
            raise ValueError(f"unknown key {table}.{extra[0]} (known: {', '.join(sorted(keys))})")
    hist, aud = raw.get("history", {}), raw.get("audit", {})
    if "mode" in hist:
        if hist["mode"] not in HISTORY_MODES:
            raise ValueError(f"history.mode must be keep or private_only, not {hist['mode']!r}")
        kw["history_mode"] = hist["mode"]
    if "retain_days" in hist:
        days = _want(hist["retain_days"], int, "history.retain_days")
        if days < 0:
            raise ValueError("history.retain_days must be 0 or more")
        kw["retain_days"] = days
    if "mode" in aud:
        if aud["mode"] not in AUDIT_MODES:
            raise ValueError(f"audit.mode must be off, metadata or full, not {aud['mode']!r}")
        kw["audit_mode"] = aud["mode"]
    if "path" in aud:
        kw["audit_path"] = _want(aud["path"], str, "audit.path")
    return Policy(**kw)


def load(path: str | Path | None = None) -> Policy:
    """The policy at ``path`` (default: :func:`default_path`); never raises."""
    p = Path(path) if path is not None else default_path()
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        return Policy(path=str(p))
    except (OSError, UnicodeDecodeError) as exc:
        return _restrictive(p, f"{p} cannot be read ({type(exc).__name__}: {exc})")
    try:
        return parse(text, p)
    except ValueError as exc:
        return _restrictive(p, f"{p}: {exc}")


_cache: dict[str, tuple[Any, Policy]] = {}
_cache_lock = threading.Lock()


def current() -> Policy:
    """The policy in force (re-read when the file or ``ATELIER_POLICY`` changes)."""
    p = default_path()
    try:
        st = p.stat()
        stamp: Any = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    key = str(p)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    pol = load(p)
    with _cache_lock:
        _cache[key] = (stamp, pol)
    return pol


# -- digests -------------------------------------------------------------------------------------
_FOLDER_SKIP = {".git", ".cache", "__pycache__"}


def _digest_cache() -> Path:
    from desktop_app.core.paths import get_paths

    return get_paths().cache / "model-digests.json"


def model_digest(path: str | Path, token=None) -> str:
    """The sha256 an admin lists in ``allowed_models``: a file's own sha256; for a folder (a
    diffusers pipeline), the sha256 of its manifest, one line ``relative/path<TAB>sha256`` per file
    in sorted order (``atelier models digest`` prints it). Cached by path, size and mtime."""
    from desktop_app.core.model_files import file_sha256

    p = Path(path).expanduser().resolve()
    files = [p] if p.is_file() else sorted(
        f for f in p.rglob("*") if f.is_file() and not _FOLDER_SKIP & set(f.relative_to(p).parts))
    stamp = [[str(f), st.st_size, st.st_mtime_ns] for f in files for st in (f.stat(),)]
    cache_file = _digest_cache()
    try:
        cache = json.loads(cache_file.read_text("utf-8"))
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(str(p))
    if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    if p.is_file():
        digest = file_sha256(p, token)
    else:
        lines = "".join(f"{f.relative_to(p).as_posix()}\t{file_sha256(f, token)}\n" for f in files)
        digest = hashlib.sha256(lines.encode("utf-8")).hexdigest()
    cache[str(p)] = {"stamp": stamp, "sha256": digest}
    try:
        from desktop_app.core.paths import write_json_atomic

        write_json_atomic(cache_file, cache)
    except OSError:
        pass  # no cache: hashed again next time
    return digest


def record_digest(rec: Any, token=None) -> str:
    """A library record's digest (its stored sha256 when it is a single file, else computed)."""
    p = Path(rec.path)
    if getattr(rec, "sha256", "") and p.is_file():
        return rec.sha256.lower()
    return model_digest(p, token)


def refuse_locked(key: str) -> None:
    """Raise :class:`PolicyLocked` when the policy fixes setting ``key``."""
    pol = current()
    if key in pol.locked():
        raise PolicyLocked(f"'{key}' is fixed by {pol.source}; ask your administrator to change it.")


def refuse_import() -> None:
    pol = current()
    if not pol.imports_allowed:
        raise PolicyLocked(f"Importing models is turned off by {pol.source}.")


def apply_at_startup(library=None, register_dirs: bool = True) -> list[str]:
    """What the policy does when the app or a command starts (never on the GUI thread: it scans
    folders and opens the history): registers ``model_dirs`` (read-only, in place) and deletes the
    conversations older than ``history.retain_days``, that deletion itself an audit record. Returns
    lines to show the user (what went wrong; the policy's own error first)."""
    import logging
    import time

    log = logging.getLogger(__name__)
    pol = current()
    lines = [f"The administrator's policy is not valid, so Atelier runs in its most restrictive mode: {pol.error}"] \
        if pol.error else []
    if not pol.present:
        return lines
    if register_dirs and pol.model_dirs:
        try:
            from desktop_app.hub.discovery import register_folders

            register_folders([d for d in pol.model_dirs if Path(d).expanduser().is_dir()], library)
        except Exception as exc:  # noqa: BLE001 - a bad folder must not stop the app
            log.exception("could not register the policy's model folders")
            lines.append(f"The administrator's model folders could not be registered: {exc}")
    if pol.retain_days is not None:
        try:
            from desktop_app.core.history import HistoryStore

            days = pol.retain_days
            with HistoryStore() as store:
                n = store.delete_older_than(time.time() - days * 86400)
            if n:
                from desktop_app.core.audit import current_log

                audit = current_log()
                if audit is not None:
                    audit.append("history_retention", "", "", {"retain_days": days}, "done",
                                 counts={"conversations_deleted": n})
        except Exception as exc:  # noqa: BLE001
            log.exception("history retention failed")
            lines.append(f"Old conversations could not be deleted as the policy asks: {exc}")
    return lines
