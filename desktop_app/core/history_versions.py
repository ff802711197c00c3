"""A reply's versions (Qt-free): Regenerate keeps the earlier answers; the message shows one of
them (‹ k/n ›) and that one is what the model reads next.

``messages.versions`` holds ``{"all": [version, ...], "current": i}`` (``{}``: one version, the
message itself). A version is ``{"content", "thinking", "stats"}``; the message's own columns are
always ``all[current]``. While a regenerated reply streams, its slot in ``all`` is ``None``."""

from __future__ import annotations

import json

MAX_VERSIONS = 20  # the oldest go first


def snapshot(msg) -> dict:
    return {"content": msg.content, "thinking": msg.thinking, "stats": dict(msg.stats or {})}


def versions_of(msg) -> list[dict]:
    """Every settled version of ``msg``, oldest first (the message alone when it has none)."""
    done = [v for v in (msg.versions or {}).get("all") or [] if v is not None]
    return done or [snapshot(msg)]


def position(msg) -> tuple[int, int]:
    """(index shown, how many): (0, 1) for a message with one version."""
    v = msg.versions or {}
    n = len(v.get("all") or [])
    return (int(v.get("current", 0)), n) if n > 1 else (0, 1)


def _write(store, message_id: int, versions: dict, version: dict | None = None) -> None:
    sets, args = ["versions = ?"], [json.dumps(versions, default=str)]
    if version is not None:
        sets += ["content = ?", "thinking = ?", "stats = ?"]
        args += [version["content"], version["thinking"], json.dumps(version["stats"], default=str)]
    with store._lock:
        store._db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", (*args, message_id))


def start_regenerated(store, message_id: int, earlier: list[dict]) -> None:
    """The new reply ``message_id`` replaces a reply that had the versions ``earlier``."""
    earlier = earlier[-(MAX_VERSIONS - 1):]
    _write(store, message_id, {"all": [*earlier, None], "current": len(earlier)})


def settle(store, message_id: int) -> None:
    """A regenerated reply finished: its text becomes its version."""
    msg = store.get_message(message_id)
    v = (msg.versions or {}) if msg else {}
    all_ = list(v.get("all") or [])
    if msg is None or not all_ or all_[v.get("current", -1)] is not None:
        return
    all_[v["current"]] = snapshot(msg)
    _write(store, message_id, {"all": all_, "current": v["current"]})


def drop_pending(store, message_id: int):
    """A regenerated reply that came to nothing: the message goes back to the version it replaced
    (returned); None when it had no earlier version (then it may be removed as before)."""
    msg = store.get_message(message_id)
    earlier = [x for x in ((msg.versions or {}).get("all") or []) if x is not None] if msg else []
    if not earlier:
        return None
    cur = len(earlier) - 1
    _write(store, message_id, {"all": earlier, "current": cur} if len(earlier) > 1 else {}, earlier[cur])
    return store.get_message(message_id)


def show_version(store, message_id: int, index: int):
    """Show version ``index`` (clamped); it is what the model reads from now on. Returns the message."""
    msg = store.get_message(message_id)
    all_ = versions_of(msg)
    if len(all_) < 2:
        return msg
    i = max(0, min(index, len(all_) - 1))
    _write(store, message_id, {"all": all_, "current": i}, all_[i])
    return store.get_message(message_id)
