"""The SQLite chat history store (real SQLite files in the test's ATELIER_HOME)."""

from __future__ import annotations

import json
import logging
import sqlite3
import stat
import threading

import pytest

from desktop_app.core import history as H
from desktop_app.core.errors import AtelierError
from desktop_app.core.history import HistoryError, HistoryStore, PrivateHistory, to_chat_messages
from desktop_app.core.paths import get_paths


def mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_file_in_data_dir_private_modes_and_wal():
    with HistoryStore() as h:
        h.create_conversation("x")
        db = get_paths().data / "history.sqlite3"
        assert h.path == db and db.exists()
        assert mode(db) == 0o600
        assert mode(db.parent) == 0o700
        wal = db.with_name(db.name + "-wal")
        assert wal.exists() and mode(wal) == 0o600
        assert h._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert h.schema_version == H.SCHEMA_VERSION


def test_conversation_and_messages_survive_reopen():
    with HistoryStore() as h:
        c = h.create_conversation("Trip planning", model_id="starter/x", system_prompt="Be brief.",
                                  params={"temperature": 0.7})
        h.add_message(c.id, "user", "Where to go in May?")
        a = h.add_message(c.id, "assistant", "Lisbon.", thinking="They like sun.", model_id="starter/x",
                          params={"seed": 1}, stats={"tokens": 3, "ttft_s": 0.1})
    with HistoryStore() as h:
        conv = h.get_conversation(c.id)
        assert conv.title == "Trip planning" and conv.system_prompt == "Be brief."
        assert conv.params == {"temperature": 0.7} and conv.message_count == 2
        msgs = h.messages(c.id)
        assert [m.role for m in msgs] == ["user", "assistant"]
        assert msgs[1].id == a.id and msgs[1].thinking == "They like sun." and msgs[1].stats["tokens"] == 3
        assert msgs[1].finished
        # thinking is never fed back to the model
        assert to_chat_messages(msgs, conv.system_prompt) == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where to go in May?"},
            {"role": "assistant", "content": "Lisbon."},
        ]


def test_list_order_paging_count_rename_search():
    with HistoryStore() as h:
        ids = []
        for i in range(25):
            c = h.create_conversation(f"chat {i}")
            h.add_message(c.id, "user", f"message number {i} about {'cats' if i % 5 == 0 else 'dogs'}")
            ids.append(c.id)
        assert h.count_conversations() == 25
        page1 = h.list_conversations(limit=10)
        page3 = h.list_conversations(limit=10, offset=20)
        assert [c.id for c in page1] == ids[::-1][:10]
        assert [c.id for c in page3] == ids[::-1][20:]
        # search by message text (case-insensitive) and by title
        assert h.count_conversations(search="CATS") == 5
        assert {c.id for c in h.search("cats")} == {ids[i] for i in range(0, 25, 5)}
        h.rename(ids[3], "Holiday 100% sure")
        assert [c.id for c in h.search("100%")] == [ids[3]]
        assert h.count_conversations(search="_") == 0  # LIKE wildcards are escaped
        # the renamed conversation moved to the top (updated)
        assert h.list_conversations(limit=1)[0].id == ids[3]
        with pytest.raises(AtelierError):
            h.rename(999999, "nope")


def test_streaming_update_is_throttled_and_finish_commits():
    with HistoryStore() as h:
        h.stream_interval_s = 0.5
        c = h.create_conversation()
        m = h.add_message(c.id, "assistant", "", finished=False)
        assert h.update_message(m.id, "partial") is False  # just created: within the interval
        assert h.update_message(m.id, "partial 2", force=True) is True
        assert h.get_message(m.id).content == "partial 2" and not h.get_message(m.id).finished
        h.finish_message(m.id, content="final", thinking="t", stats={"finish_reason": "stop"})
        got = h.get_message(m.id)
        assert (got.content, got.thinking, got.finished, got.stats) == ("final", "t", True, {"finish_reason": "stop"})


def test_truncate_after_delete_message_edit():
    with HistoryStore() as h:
        c = h.create_conversation()
        u1 = h.add_message(c.id, "user", "one")
        h.add_message(c.id, "assistant", "uno")
        u2 = h.add_message(c.id, "user", "two")
        h.add_message(c.id, "assistant", "dos")
        other = h.create_conversation()
        h.add_message(other.id, "user", "untouched")
        # edit and resend the first prompt
        h.edit_message(u1.id, "one (edited)")
        assert h.truncate_after(u1.id) == 3
        assert [m.content for m in h.messages(c.id)] == ["one (edited)"]
        assert [m.content for m in h.messages(other.id)] == ["untouched"]
        assert h.delete_message(u1.id) is True
        assert h.messages(c.id) == []
        with pytest.raises(AtelierError):
            h.truncate_after(u2.id)
        with pytest.raises(ValueError):
            h.add_message(c.id, "tool", "x")
        with pytest.raises(AtelierError):
            h.add_message(123456, "user", "no such conversation")


def test_delete_conversation_and_delete_all_really_gone():
    secret = "PATIENT-SECRET-7731"
    with HistoryStore() as h:
        c = h.create_conversation("keep")
        h.add_message(c.id, "user", "hello")
        d = h.create_conversation("secret one")
        h.add_message(d.id, "user", secret * 50)
        assert h.delete_conversation(d.id, vacuum=True)
        assert h.get_conversation(d.id) is None and h.messages(d.id) == []
        path = h.path
        assert secret.encode() not in _all_bytes(path)
        h.add_message(c.id, "user", secret * 50)
        h.delete_all()
        assert h.count_conversations() == 0
        assert secret.encode() not in _all_bytes(path)
        wal = path.with_name(path.name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0


def _all_bytes(path):
    data = path.read_bytes()
    for suffix in ("-wal", "-shm"):
        p = path.with_name(path.name + suffix)
        if p.exists():
            data += p.read_bytes()
    return data


def test_export_markdown_and_json():
    with HistoryStore() as h:
        c = h.create_conversation("Python help", model_id="m", system_prompt="You code.")
        h.add_message(c.id, "user", "Reverse a list?")
        h.add_message(c.id, "assistant", "```python\nxs[::-1]\n```", thinking="Slicing.", stats={"thinking_s": 2.2})
        md = h.export_markdown(c.id)
        assert md.startswith("# Python help\n")
        assert "## System\n\nYou code." in md and "## User\n\nReverse a list?" in md
        assert "<summary>Thought for 2 s</summary>" in md and "```python\nxs[::-1]\n```" in md
        js = h.export_json(c.id)
        json.dumps(js)
        assert js["conversation"]["title"] == "Python help"
        assert [m["role"] for m in js["messages"]] == ["user", "assistant"]
        assert js["messages"][1]["thinking"] == "Slicing."
        with pytest.raises(AtelierError):
            h.export_json(424242)


def test_private_history_never_touches_disk():
    before = sorted(get_paths().data.iterdir())
    p = PrivateHistory()
    c = p.create_conversation("private")
    p.add_message(c.id, "user", "confidential")
    assert p.private and p.path is None
    assert [m.content for m in p.messages(c.id)] == ["confidential"]
    assert p.count_conversations(search="confid") == 1
    p.close()
    assert sorted(get_paths().data.iterdir()) == before


def test_newer_schema_is_refused_and_garbage_is_moved_aside_with_a_notice(tmp_path):
    db = tmp_path / "h.sqlite3"
    HistoryStore(db).close()
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={H.SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(HistoryError, match="newer Atelier"):
        HistoryStore(db)
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    # issue 9: garbage is no longer a dead end; it is kept aside and a fresh history starts, said plainly
    s = HistoryStore(bad)
    assert "damaged" in s.recovery_notice and "kept at" in s.recovery_notice
    s.close()


def test_migrations_apply_in_order(tmp_path, monkeypatch):
    db = tmp_path / "m.sqlite3"
    HistoryStore(db).close()
    monkeypatch.setattr(H, "MIGRATIONS", H.MIGRATIONS + ["ALTER TABLE conversations ADD COLUMN pinned INTEGER DEFAULT 0"])
    monkeypatch.setattr(H, "SCHEMA_VERSION", len(H.MIGRATIONS))
    with HistoryStore(db) as h:
        assert h.schema_version == H.SCHEMA_VERSION
        cols = [r[1] for r in h._db.execute("PRAGMA table_info(conversations)")]
        assert "pinned" in cols


def test_thread_safe_concurrent_writers():
    with HistoryStore() as h:
        c = h.create_conversation()
        errors = []

        def worker(n):
            try:
                for i in range(50):
                    h.add_message(c.id, "user", f"{n}-{i}")
                    h.list_conversations(search="1-")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(h.messages(c.id)) == 200


def test_search_index_follows_inserts_updates_and_deletes():
    with HistoryStore() as h:
        assert h.full_text_index == H._fts5_trigram_available()
        c = h.create_conversation("untitled")
        m = h.add_message(c.id, "assistant", "", finished=False)
        assert h.count_conversations(search="Quokka") == 0
        h.update_message(m.id, "the quokka smiles", force=True)
        assert [x.id for x in h.search("QUOKKA")] == [c.id]  # case-insensitive substring
        assert [x.id for x in h.search("okka smi")] == [c.id]
        h.finish_message(m.id, content="the wombat digs")
        assert h.search("quokka") == [] and [x.id for x in h.search("wombat")] == [c.id]
        h.add_message(c.id, "user", 'say "hi" (please) OR NOT*')
        assert [x.id for x in h.search('"hi" (please) OR NOT*')] == [c.id]  # no FTS syntax leaks through
        h.delete_conversation(c.id)
        assert h.search("wombat") == [] and h.search("please") == []


def test_old_schema_is_migrated(tmp_path):
    db = tmp_path / "v1.sqlite3"
    con = sqlite3.connect(db)
    con.executescript(H.MIGRATIONS[0])
    con.execute("PRAGMA user_version=1")
    con.execute("INSERT INTO conversations (title, created, updated) VALUES ('old chat', 1, 1)")
    con.execute("INSERT INTO messages (conversation_id, role, content, created) VALUES (1, 'user', 'ancient pangolin', 1)")
    con.commit()
    con.close()
    with HistoryStore(db) as h:
        assert h.schema_version == H.SCHEMA_VERSION
        assert [c.title for c in h.search("pangolin")] == ["old chat"]  # existing text is indexed


def test_text_never_reaches_the_log(caplog):
    secret = "SECRET-DIAGNOSIS-4412"
    with caplog.at_level(logging.DEBUG):
        with HistoryStore() as h:
            c = h.create_conversation(secret)
            m = h.add_message(c.id, "user", secret)
            h.update_message(m.id, secret + "!", force=True)
            h.search(secret)
            h.truncate_after(m.id, inclusive=True)
            h.delete_conversation(c.id, vacuum=True)
            h.delete_all()
    assert caplog.records  # the store does log (ids, counts) ...
    assert secret not in caplog.text  # ... but never the text


def test_an_export_closes_a_code_fence_a_reply_left_open():
    from desktop_app.core.markdown_text import close_open_fence, open_fence

    assert open_fence("```py\nx = 1") == "```" and open_fence("~~~~\nraw\n```\n") == "~~~~"
    assert open_fence("```\nx\n```") is None and open_fence("plain") is None
    assert close_open_fence("```py\nx = 1\n") == "```py\nx = 1\n```"
    assert close_open_fence("~~~~\nraw\n```") == "~~~~\nraw\n```\n~~~~"  # a shorter other fence does not close it
    with HistoryStore() as h:
        c = h.create_conversation("Cut")
        h.add_message(c.id, "assistant", "Start:\n```python\nprint(1)", stats={"finish_reason": "length"})
        h.add_message(c.id, "user", "Thanks")
        md = h.export_markdown(c.id)
        assert "```python\nprint(1)\n```\n\n## User\n\nThanks" in md
        # the stored reply is unchanged
        assert h.messages(c.id)[0].content == "Start:\n```python\nprint(1)"


@pytest.mark.parametrize("title, name", [
    ('a/b\\c:d*e?f"g<h>i|j', "a b c d e f g h i j.md"),
    ("  ..hidden. ", "hidden.md"),
    ("CON", "CON chat.md"),
    ("nul.txt", "nul.txt chat.md"),
    ("", "chat.md"),
    ("line\nbreak\ttab\x00nul", "line break tab nul.md"),
    ("x" * 300, "x" * 80 + ".md"),
])
def test_export_file_names_are_valid_on_every_os(title, name):
    from desktop_app.core.safepath import safe_filename

    assert safe_filename(title, "md") == name
