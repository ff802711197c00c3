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


# --- edits that branch: a user message's versions each keep the messages that followed it -------
def _tail(store, msg) -> list[dict]:
    return [{"role": m.role, "content": m.content, "thinking": m.thinking, "stats": dict(m.stats or {}),
             "model_id": m.model_id, "params": dict(m.params or {}), "versions": m.versions}
            for m in store.messages(msg.conversation_id) if m.id > msg.id]


def branch_edit(store, message_id: int, text: str):
    """Edit a user message as a new branch: its old text and every message after it are kept as
    its previous version (‹ k/n ›), the later messages leave the conversation, the new text is
    shown. Returns the message."""
    msg = store.get_message(message_id)
    v = msg.versions or {}
    all_ = list(v.get("all") or []) or [{"content": msg.content, "thinking": "", "stats": {}, "tail": []}]
    cur = int(v.get("current", len(all_) - 1)) if v.get("all") else 0
    all_[cur] = {**all_[cur], "content": msg.content, "tail": _tail(store, msg)}
    all_ = [*all_, {"content": text, "thinking": "", "stats": {}, "tail": None}][-MAX_VERSIONS:]
    store.truncate_after(message_id)
    _write(store, message_id, {"all": all_, "current": len(all_) - 1}, all_[-1])
    return store.get_message(message_id)


def show_branch(store, message_id: int, index: int):
    """Show version ``index`` of a user message with the messages that followed it then; the
    branch shown now is kept in its place."""
    msg = store.get_message(message_id)
    v = msg.versions or {}
    all_ = list(v.get("all") or [])
    if len(all_) < 2:
        return msg
    i, cur = max(0, min(index, len(all_) - 1)), int(v.get("current", 0))
    all_[cur] = {**all_[cur], "content": msg.content, "tail": _tail(store, msg)}
    store.truncate_after(message_id)
    for t in all_[i].get("tail") or []:
        m = store.add_message(msg.conversation_id, t["role"], t["content"], thinking=t.get("thinking", ""),
                              model_id=t.get("model_id"), params=t.get("params") or {}, stats=t.get("stats") or {})
        if t.get("versions"):
            _write(store, m.id, t["versions"])
    _write(store, message_id, {"all": all_, "current": i}, {**all_[i], "thinking": "", "stats": {}})
    return store.get_message(message_id)
