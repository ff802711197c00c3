"""Chat history: conversations and messages in SQLite (WAL), or in memory for private chats.

Design:

* One file, ``get_paths().data / "history.sqlite3"``, mode 0600 in a 0700 folder. WAL journal,
  ``synchronous=NORMAL`` (a killed process loses nothing that was committed), ``secure_delete``
  (deleted text is overwritten, not just unlinked from the b-tree).
* Schema versioned with ``PRAGMA user_version``; ``MIGRATIONS[i]`` brings version ``i`` to ``i+1``.
  A file written by a newer Atelier is refused with a clear message instead of being damaged.
* Every finished message is committed at once (``add_message`` / ``finish_message``). A reply that
  is still streaming is saved as it grows: ``update_message`` writes at most every
  ``stream_interval_s`` (0.5 s) so a crash or ``kill -9`` loses at most about the last second.
* Thread safety: one connection (``check_same_thread=False``) behind a re-entrant lock; the GUI
  calls the store from a background thread.
* Privacy: ``PrivateHistory()`` has the same API on ``:memory:`` and never touches the disk.
  ``delete_all()`` deletes, VACUUMs and truncates the WAL, so the text is really gone. Prompt and
  reply text never goes to the log (only ids and counts).

Roles follow the OpenAI chat format: ``system``, ``user``, ``assistant``. Timestamps are Unix
seconds (float). ``params`` and ``stats`` are JSON objects (sampling parameters, and the
engine's per-reply stats: tokens, ttft_s, tokens_per_s, …).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from desktop_app.core.errors import AtelierError, storage_error
from desktop_app.core.history_recovery import aside_name, integrity_problem, salvage_history
from desktop_app.core.history_schema import (  # noqa: F401 - MIGRATIONS/SCHEMA_VERSION: read here at open
    DB_NAME, MIGRATIONS, ROLES, SCHEMA_VERSION, _fts5_trigram_available,
)
from desktop_app.core import history_export

log = logging.getLogger(__name__)

class HistoryError(AtelierError):
    """The history database cannot be used (unreadable, newer schema, …)."""


@dataclass
class Conversation:
    id: int
    title: str
    created: float
    updated: float
    model_id: str | None = None
    system_prompt: str | None = None
    params: dict = field(default_factory=dict)
    message_count: int = 0
    snippet: str = ""  # listing with a search: the matching text of its first matching message

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    thinking: str = ""
    model_id: str | None = None
    params: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    created: float = 0.0
    finished: bool = True
    versions: dict = field(default_factory=dict)  # a reply's versions (core/history_versions.py)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_chat(self) -> dict:
        """The OpenAI-format message fed to the engine: role and answer only, never the thought."""
        return {"role": self.role, "content": self.content}


def to_chat_messages(messages: Iterable[Message], system_prompt: str | None = None) -> list[dict]:
    """Messages for ``ChatEngine.chat``: an optional system prompt first, then each message's
    role/content (thinking left out)."""
    out: list[dict] = []
    if system_prompt:
        out.append({"role": "system", "content": system_prompt})
    out += [m.to_chat() for m in messages]
    return out


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _secure_file(path: Path) -> None:
    """Create ``path`` (if missing) with mode 0600 and force 0600 on it and its WAL/SHM files."""
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    for p in (path, Path(str(path) + "-wal"), Path(str(path) + "-shm")):
        try:
            if p.exists():
                os.chmod(p, 0o600)
        except OSError:  # e.g. a filesystem without permissions (FAT USB stick)
            pass


class HistoryStore:
    """The chat history. ``HistoryStore()`` opens the default file; ``HistoryStore(path)`` another
    one; ``PrivateHistory()`` (or ``HistoryStore(":memory:")``) an in-memory store.

    All methods are thread-safe. Call ``close()`` when done (also a context manager).
    """

    stream_interval_s = 0.5

    def __init__(self, path: str | Path | None = None) -> None:
        self._lock = threading.RLock()
        self._last_write: dict[int, float] = {}
        self._fts = False
        if path is None:
            from desktop_app.core.paths import get_paths

            path = get_paths().data / DB_NAME  # get_paths() makes the data folder 0700
        self.private = str(path) == ":memory:"
        self.path: Path | None = None if self.private else Path(path)
        # Set when the file was damaged at open: what was kept and where the original is (show it).
        self.recovery_notice = ""
        salvaged: list[dict] | None = None
        if self.path is not None:
            if not self.path.parent.exists():
                try:
                    self.path.parent.mkdir(parents=True, mode=0o700)
                except OSError as exc:
                    raise HistoryError(str(storage_error(exc, self.path.parent, "the chat history"))) from None
            problem = integrity_problem(self.path)
            if problem:
                salvaged = self._move_aside(problem)
            _secure_file(self.path)
        self._db = None
        try:
            self._db = sqlite3.connect(
                ":memory:" if self.private else str(self.path),
                check_same_thread=False,
                isolation_level=None,  # autocommit; explicit BEGIN for multi-statement changes
                timeout=10.0,
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA secure_delete=ON")
            if not self.private:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            self._fts = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'"
            ).fetchone() is not None
        except BaseException as exc:
            if self._db is not None:
                self._db.close()
                self._db = None
            if not isinstance(exc, sqlite3.DatabaseError):
                raise
            if "readonly" in str(exc) or "unable to open" in str(exc):
                raise HistoryError(
                    f"The chat history at {self.path} cannot be opened for writing ({exc}): the folder is "
                    "read-only or full. Chats stay private until it is writable again."
                ) from exc
            if "locked" in str(exc) or "busy" in str(exc):
                raise HistoryError(
                    f"The chat history at {self.path} is in use by another program (another Atelier?). "
                    "Close it and try again."
                ) from exc
            raise HistoryError(
                f"The chat history at {self.path} cannot be read ({exc}). Move the file away to start "
                "a fresh history (your models and settings are not affected)."
            ) from exc
        if self.path is not None:
            _secure_file(self.path)
        if salvaged:
            self.import_conversations(salvaged)

    def _move_aside(self, problem: str) -> list[dict]:
        """Keep the damaged file (renamed with the date), salvage what SQLite can read, start afresh."""
        path = self.path
        aside = aside_name(path)
        os.replace(path, aside)
        for ext in ("-wal", "-shm"):
            side = Path(str(path) + ext)
            if side.exists():
                os.replace(side, Path(str(aside) + ext))
        salvaged = salvage_history(aside)
        n_msgs = sum(len(c["messages"]) for c in salvaged)
        log.error("chat history damaged (%s): moved to %s, recovered %d conversations", problem, aside, len(salvaged))
        kept = (f"{len(salvaged)} conversations ({n_msgs} messages) were recovered" if salvaged
                else "nothing in it could be read back")
        self.recovery_notice = (f"The chat history was damaged ({problem}). The damaged file is kept at {aside}; "
                                f"{kept} into a fresh history.")
        return salvaged
    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"The chat history at {self.path} was written by a newer Atelier (schema {version}, "
                    f"this version knows {SCHEMA_VERSION}). Update Atelier to open it."
                )
            for v in range(version, SCHEMA_VERSION):
                step = MIGRATIONS[v]
                sql = (step() if callable(step) else step).strip()
                if sql and not sql.endswith(";"):
                    sql += ";"
                # one script, one transaction: the schema and its version change together or not at all
                try:
                    self._db.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={v + 1};\nCOMMIT;")
                except Exception:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                log.info("history schema migrated to version %d", v + 1)

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def __enter__(self) -> "HistoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ conversations
    def create_conversation(
        self,
        title: str = "New chat",
        model_id: str | None = None,
        system_prompt: str | None = None,
        params: dict | None = None,
    ) -> Conversation:
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO conversations (title, created, updated, model_id, system_prompt, params) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (title, now, now, model_id, system_prompt, json.dumps(params or {})),
            )
            cid = cur.lastrowid
        log.debug("conversation %d created", cid)
        return Conversation(cid, title, now, now, model_id, system_prompt, dict(params or {}), 0)

    def get_conversation(self, conversation_id: int) -> Conversation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS n "
                "FROM conversations c WHERE c.id = ?",
                (conversation_id,),
            ).fetchone()
        return self._conv(row) if row else None

    def _where_search(self, search: str | None) -> tuple[str, tuple]:
        if not search:
            return "", ()
        pat = f"%{_escape_like(search)}%"
        if self._fts and len(search) >= 3:  # trigram index: substring match, case-insensitive
            phrase = '"' + search.replace('"', '""') + '"'
            return (
                " WHERE (c.title LIKE ? ESCAPE '\\' OR c.id IN (SELECT m.conversation_id FROM messages m "
                "WHERE m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)))",
                (pat, phrase),
            )
        return (
            " WHERE (c.title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m "
            "WHERE m.conversation_id = c.id AND m.content LIKE ? ESCAPE '\\'))",
            (pat, pat),
        )

    def list_conversations(self, search: str | None = None, limit: int = 200, offset: int = 0) -> list[Conversation]:
        """Newest first (by last update). ``search``: case-insensitive substring of the title or of
        any message's text. Page with ``limit``/``offset``; ``count_conversations`` gives the total.
        ``message_count`` is left 0 here (cheap listing); ``get_conversation`` fills it."""
        where, args = self._where_search(search)
        hit, hit_args = "", ()
        if search:  # the first message that matches, for the list's search snippet (one page at a time)
            hit = (", (SELECT m.content FROM messages m WHERE m.conversation_id = c.id AND m.content LIKE ? "
                   "ESCAPE '\\' ORDER BY m.id LIMIT 1) AS hit")
            hit_args = (f"%{_escape_like(search)}%",)
        with self._lock:
            rows = self._db.execute(
                f"SELECT c.*{hit} FROM conversations c{where} ORDER BY c.updated DESC, c.id DESC LIMIT ? OFFSET ?",
                (*hit_args, *args, int(limit), int(offset)),
            ).fetchall()
        convs = [self._conv(r) for r in rows]
        if search:
            for c, r in zip(convs, rows):
                c.snippet = history_export.snippet_around(r["hit"] or "", search)
        return convs

    def count_conversations(self, search: str | None = None) -> int:
        where, args = self._where_search(search)
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM conversations c{where}", args).fetchone()[0]

    @property
    def full_text_index(self) -> bool:
        """True when message search uses the FTS5 trigram index (else a LIKE scan)."""
        return self._fts

    def search(self, text: str, limit: int = 200) -> list[Conversation]:
        """Conversations whose title or messages contain ``text`` (case-insensitive), newest first."""
        return self.list_conversations(search=text, limit=limit)

    def rename(self, conversation_id: int, title: str) -> None:
        self._update_conv(conversation_id, title=title)

    def update_conversation(self, conversation_id: int, **fields: Any) -> None:
        """Change ``title``, ``model_id``, ``system_prompt`` and/or ``params`` of a conversation."""
        self._update_conv(conversation_id, **fields)

    def _update_conv(self, conversation_id: int, **fields: Any) -> None:
        allowed = {"title", "model_id", "system_prompt", "params"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown conversation fields: {sorted(bad)}")
        if "params" in fields:
            fields["params"] = json.dumps(fields["params"] or {})
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            cur = self._db.execute(
                f"UPDATE conversations SET {sets}, updated = ? WHERE id = ?",
                (*fields.values(), time.time(), conversation_id),
            )
        if cur.rowcount == 0:
            raise AtelierError(f"No conversation {conversation_id} in the history.")

    def delete_conversation(self, conversation_id: int, vacuum: bool = False) -> bool:
        """Delete a conversation and its messages (overwritten on disk: secure_delete). With
        ``vacuum`` the file is also compacted and the WAL truncated."""
        with self._lock:
            cur = self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            self._last_write.clear()
            if vacuum:
                self.vacuum()
        log.info("conversation %d deleted", conversation_id)
        return cur.rowcount > 0

    def delete_older_than(self, cutoff: float) -> int:
        """Delete the conversations last changed before ``cutoff`` (epoch seconds), then compact the
        file so their text is gone from disk; returns how many (the policy's history.retain_days)."""
        with self._lock:
            cur = self._db.execute("DELETE FROM conversations WHERE updated < ?", (float(cutoff),))
            n = cur.rowcount
            self._last_write.clear()
            if n:
                self.vacuum()
        log.info("%d conversation(s) older than the retention deleted", n)
        return n

    def delete_all(self) -> None:
        """Delete every conversation: the rows, then VACUUM and a WAL checkpoint (TRUNCATE) so no
        text remains in the database file or its journal."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM messages")
                self._db.execute("DELETE FROM conversations")
                self._db.execute("DELETE FROM sqlite_sequence")
                self._db.execute("COMMIT")
            except Exception:
                self._db.execute("ROLLBACK")
                raise
            self._last_write.clear()
            self.vacuum()
        log.info("all chat history deleted")

    def vacuum(self) -> None:
        with self._lock:
            self._db.execute("VACUUM")
            if not self.private:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------------ messages
    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str = "",
        *,
        thinking: str = "",
        model_id: str | None = None,
        params: dict | None = None,
        stats: dict | None = None,
        finished: bool = True,
    ) -> Message:
        """Append a message (committed at once). For a reply about to stream, pass
        ``finished=False`` and then ``update_message`` / ``finish_message``."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO messages (conversation_id, role, content, thinking, model_id, params, stats, "
                    "created, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        conversation_id, role, content, thinking, model_id,
                        json.dumps(params or {}), json.dumps(stats or {}), now, int(finished),
                    ),
                )
                mid = cur.lastrowid
                self._db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._db.execute("ROLLBACK")
                raise AtelierError(f"No conversation {conversation_id} in the history.") from exc
            except Exception:
                self._db.execute("ROLLBACK")
                raise
            self._last_write[mid] = time.monotonic()
        return Message(mid, conversation_id, role, content, thinking, model_id, dict(params or {}),
                       dict(stats or {}), now, finished)

    def update_message(self, message_id: int, content: str, thinking: str | None = None, force: bool = False) -> bool:
        """Save a streaming reply's text so far. Throttled: writes only when ``stream_interval_s``
        passed since the last write of this message (or ``force``). Returns True if written."""
        now = time.monotonic()
        with self._lock:
            last = self._last_write.get(message_id, 0.0)
            if not force and now - last < self.stream_interval_s:
                return False
            if thinking is None:
                self._db.execute("UPDATE messages SET content = ? WHERE id = ?", (content, message_id))
            else:
                self._db.execute(
                    "UPDATE messages SET content = ?, thinking = ? WHERE id = ?", (content, thinking, message_id)
                )
            self._last_write[message_id] = now
        return True

    def finish_message(
        self,
        message_id: int,
        content: str | None = None,
        thinking: str | None = None,
        stats: dict | None = None,
    ) -> None:
        """Mark a streamed reply finished (also after a stop), with its final text and stats."""
        sets, args = ["finished = 1"], []
        for name, value in (("content", content), ("thinking", thinking)):
            if value is not None:
                sets.append(f"{name} = ?")
                args.append(value)
        if stats is not None:
            sets.append("stats = ?")
            args.append(json.dumps(stats, default=str))
        with self._lock:
            self._db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", (*args, message_id))
            self._db.execute(
                "UPDATE conversations SET updated = ? WHERE id = (SELECT conversation_id FROM messages WHERE id = ?)",
                (time.time(), message_id),
            )
            self._last_write.pop(message_id, None)

    def get_message(self, message_id: int) -> Message | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        return self._msg(row) if row else None

    def messages(self, conversation_id: int) -> list[Message]:
        """All messages of a conversation, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return [self._msg(r) for r in rows]

    def delete_message(self, message_id: int) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            self._last_write.pop(message_id, None)
        return cur.rowcount > 0

    def truncate_after(self, message_id: int, inclusive: bool = False) -> int:
        """Delete the messages after ``message_id`` in its conversation (and the message itself
        with ``inclusive``). Edit-and-resend: update the user message, ``truncate_after`` it, and
        generate again; regenerate: ``truncate_after(last_user_message_id)``. Returns the count."""
        op = ">=" if inclusive else ">"
        with self._lock:
            row = self._db.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise AtelierError(f"No message {message_id} in the history.")
            cur = self._db.execute(
                f"DELETE FROM messages WHERE conversation_id = ? AND id {op} ?", (row[0], message_id)
            )
        return cur.rowcount

    def edit_message(self, message_id: int, content: str) -> None:
        """Replace a (finished) message's text, e.g. the user's edited prompt."""
        with self._lock:
            cur = self._db.execute("UPDATE messages SET content = ? WHERE id = ?", (content, message_id))
        if cur.rowcount == 0:
            raise AtelierError(f"No message {message_id} in the history.")

    def import_conversations(self, conversations: Iterable[dict]) -> int:
        """Insert many conversations in one transaction (import, benchmarks). Each dict: ``title``,
        optional ``created``/``updated``/``model_id``/``system_prompt``/``params`` and ``messages``
        (dicts with ``role``, ``content``, optional ``thinking``, ``stats``, ``created``, ``versions``). Returns
        the number of conversations inserted."""
        n = 0
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for c in conversations:
                    created = float(c.get("created", now))
                    cur = self._db.execute(
                        "INSERT INTO conversations (title, created, updated, model_id, system_prompt, params) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (c.get("title", ""), created, float(c.get("updated", created)), c.get("model_id"),
                         c.get("system_prompt"), json.dumps(c.get("params") or {})),
                    )
                    cid = cur.lastrowid
                    rows = []
                    for m in c.get("messages", ()):
                        if m["role"] not in ROLES:
                            raise ValueError(f"role must be one of {ROLES}, not {m['role']!r}")
                        rows.append((cid, m["role"], m.get("content", ""), m.get("thinking", ""), m.get("model_id"),
                                     json.dumps(m.get("params") or {}), json.dumps(m.get("stats") or {}),
                                     float(m.get("created", created)), 1, json.dumps(m.get("versions") or {})))
                    self._db.executemany(
                        "INSERT INTO messages (conversation_id, role, content, thinking, model_id, params, stats, "
                        "created, finished, versions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    n += 1
                self._db.execute("COMMIT")
            except Exception:
                self._db.execute("ROLLBACK")
                raise
        return n

    # ------------------------------------------------------------------ export (core/history_export.py)
    def export_json(self, conversation_id: int) -> dict:
        return history_export.export_json(self, conversation_id)

    def export_markdown(self, conversation_id: int) -> str:
        return history_export.export_markdown(self, conversation_id)

    # ------------------------------------------------------------------ rows
    @staticmethod
    def _conv(row: sqlite3.Row) -> Conversation:
        keys = row.keys()
        return Conversation(
            id=row["id"], title=row["title"], created=row["created"], updated=row["updated"],
            model_id=row["model_id"], system_prompt=row["system_prompt"],
            params=json.loads(row["params"] or "{}"), message_count=row["n"] if "n" in keys else 0,
        )

    @staticmethod
    def _msg(row: sqlite3.Row) -> Message:
        return Message(
            id=row["id"], conversation_id=row["conversation_id"], role=row["role"], content=row["content"],
            thinking=row["thinking"], model_id=row["model_id"], params=json.loads(row["params"] or "{}"),
            stats=json.loads(row["stats"] or "{}"), created=row["created"], finished=bool(row["finished"]),
            versions=json.loads(row["versions"] or "{}") if "versions" in row.keys() else {},
        )


def PrivateHistory() -> HistoryStore:  # noqa: N802 (reads like a class at call sites)
    """A history with the same API that lives in memory only: private chats never touch disk."""
    return HistoryStore(":memory:")
