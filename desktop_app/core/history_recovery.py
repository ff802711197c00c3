"""Damaged chat history: tell a damaged file from one that only cannot be opened, and read back
whatever SQLite still can (issue 9). Used by :class:`desktop_app.core.history.HistoryStore` at open."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from desktop_app.core.history_schema import ROLES


def aside_name(path: Path) -> Path:
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    out = path.with_name(f"{path.stem}.damaged-{stamp}{path.suffix}")
    i = 1
    while out.exists():
        out = path.with_name(f"{path.stem}.damaged-{stamp}-{i}{path.suffix}")
        i += 1
    return out


# What SQLite says when the bytes themselves are bad (as opposed to "cannot open", "locked",
# "read-only": those are about access, and never a reason to move the user's history aside).
_DAMAGE_WORDS = ("not a database", "malformed", "corrupt", "disk image")


def integrity_problem(path: Path) -> str:
    """'' when the file is a healthy SQLite database (or absent, or cannot be opened at all: the
    normal open reports that), else what is wrong with its bytes, in words."""
    if not path.exists():
        return ""
    if path.stat().st_size == 0 and not Path(str(path) + "-wal").exists():
        return "the file is empty (0 bytes): it was cut short, perhaps by a full disk or a crash"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error:
        return ""
    try:
        rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc) if any(w in str(exc).lower() for w in _DAMAGE_WORDS) else ""
    finally:
        con.close()
    bad = [r[0] for r in rows if r[0] != "ok"]
    return f"SQLite's integrity check failed ({bad[0][:120]})" if bad else ""


_CONV_COLS = "id, title, created, updated, model_id, system_prompt, params"
_MSG_COLS = "id, conversation_id, role, content, thinking, model_id, params, stats, created"
_MSG_COLS_V3 = _MSG_COLS + ", versions"  # schema 3 on: a reply's versions and an edit's branches


def _salvage_rows(con: sqlite3.Connection, table: str, cols: str, max_errors: int = 20000) -> list[tuple]:
    """Every row of ``table`` that SQLite can still read, walking by id around damaged pages."""
    out, last, errors = [], -(2**62), 0
    while errors < max_errors:
        try:
            rows = con.execute(f"SELECT {cols} FROM {table} WHERE id > ? ORDER BY id LIMIT 256", (last,)).fetchall()
        except sqlite3.DatabaseError:
            errors += 1
            last = max(last, 0) + 1  # step over the unreadable row
            continue
        if not rows:
            break
        out += rows
        last = rows[-1][0]
    return out


def _versions(v: dict) -> dict:
    """A salvaged ``versions`` value kept only when it has the shape history_versions writes
    (``{"all": [version | None, ...], "current": i}``); anything else reads as one version."""
    all_ = v.get("all")
    cur = v.get("current")
    if not isinstance(all_, list) or not all_ or not isinstance(cur, int) or not 0 <= cur < len(all_):
        return {}
    if not all(x is None or (isinstance(x, dict) and isinstance(x.get("content", ""), str)) for x in all_):
        return {}
    return {"all": all_, "current": cur}


def salvage_history(path: Path) -> list[dict]:
    """What can be read back from a damaged history file, as ``import_conversations`` dicts."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        try:
            convs = _salvage_rows(con, "conversations", _CONV_COLS)
            try:
                msgs = _salvage_rows(con, "messages", _MSG_COLS_V3)
            except sqlite3.OperationalError:  # a file from before schema 3: no versions column
                msgs = [(*r, "{}") for r in _salvage_rows(con, "messages", _MSG_COLS)]
        except sqlite3.DatabaseError:  # not a database at all, or no such tables
            return []
    finally:
        con.close()

    def js(v):
        try:
            d = json.loads(v) if isinstance(v, str) else {}
            return d if isinstance(d, dict) else {}
        except ValueError:
            return {}

    def num(v, default: float) -> float:
        return float(v) if isinstance(v, (int, float)) else default

    now = time.time()
    by_id: dict[int, dict] = {}
    for cid, title, created, updated, model_id, system_prompt, params in convs:
        by_id[cid] = {"title": str(title or ""), "created": num(created, now), "updated": num(updated, now),
                      "model_id": model_id if isinstance(model_id, str) else None,
                      "system_prompt": system_prompt if isinstance(system_prompt, str) else None,
                      "params": js(params), "messages": []}
    for _mid, cid, role, content, thinking, model_id, params, stats, created, versions in msgs:
        if role not in ROLES:
            continue
        conv = by_id.get(cid)
        if conv is None:  # its conversation's row was lost: keep the message in a placeholder
            conv = by_id[cid] = {"title": f"Recovered conversation {cid}", "created": num(created, now),
                                 "updated": num(created, now), "messages": []}
        conv["messages"].append({"role": role, "content": str(content or ""), "thinking": str(thinking or ""),
                                 "model_id": model_id if isinstance(model_id, str) else None,
                                 "params": js(params), "stats": js(stats), "created": num(created, now),
                                 "versions": _versions(js(versions))})
    return list(by_id.values())
