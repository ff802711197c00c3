"""The chat history's schema: its migrations (``MIGRATIONS[i]`` brings version ``i`` to ``i+1``,
each one SQL script run in one transaction) and the optional full-text index."""

from __future__ import annotations

import sqlite3
from typing import Callable

ROLES = ("system", "user", "assistant")
DB_NAME = "history.sqlite3"

# Each entry upgrades the schema by one version (index 0: empty file -> version 1).
MIGRATIONS: list[str | Callable[[], str]] = [
    """
    CREATE TABLE conversations (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        title         TEXT    NOT NULL DEFAULT '',
        created       REAL    NOT NULL,
        updated       REAL    NOT NULL,
        model_id      TEXT,
        system_prompt TEXT,
        params        TEXT    NOT NULL DEFAULT '{}'
    );
    CREATE INDEX conversations_updated ON conversations(updated DESC, id DESC);
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role            TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content         TEXT    NOT NULL DEFAULT '',
        thinking        TEXT    NOT NULL DEFAULT '',
        model_id        TEXT,
        params          TEXT    NOT NULL DEFAULT '{}',
        stats           TEXT    NOT NULL DEFAULT '{}',
        created         REAL    NOT NULL,
        finished        INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX messages_conversation ON messages(conversation_id, id);
    """,
    lambda: _migrate_fts(),  # 1 -> 2 (defined below; its SQL depends on this SQLite): full-text index of message text, when SQLite has FTS5 with trigrams
    # 2 -> 3: a reply's versions (Regenerate keeps the earlier answers; core/history_versions.py)
    "ALTER TABLE messages ADD COLUMN versions TEXT NOT NULL DEFAULT '{}';",
]
SCHEMA_VERSION = len(MIGRATIONS)

_FTS_SQL = """
    CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id', tokenize='trigram');
    CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_fts_au AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
"""


def _fts5_trigram_available() -> bool:
    try:
        con = sqlite3.connect(":memory:")
        try:
            con.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='trigram')")
        finally:
            con.close()
        return True
    except sqlite3.Error:
        return False


def _migrate_fts() -> str:
    """Search by text without scanning every message. Older SQLite builds (no FTS5, or before
    3.34 without the trigram tokenizer) skip it; the search then falls back to LIKE."""
    return _FTS_SQL if _fts5_trigram_available() else ""
