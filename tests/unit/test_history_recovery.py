"""A damaged history file is kept aside with the date, what SQLite can read is recovered, and the
user is told (issue 9, item 6)."""

from __future__ import annotations

import sqlite3

from desktop_app.core.history import HistoryStore


def _fill(path, n_conv=30, n_msg=20):
    s = HistoryStore(path)
    s.import_conversations({"title": f"chat {i}", "messages": [
        {"role": "user" if j % 2 == 0 else "assistant", "content": f"message {i}.{j} " + "x" * 400}
        for j in range(n_msg)]} for i in range(n_conv))
    s.close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def test_healthy_file_is_untouched(tmp_path):
    p = tmp_path / "history.sqlite3"
    _fill(p, 3, 2)
    s = HistoryStore(p)
    assert s.recovery_notice == "" and s.count_conversations() == 3
    s.close()
    assert sorted(x.name for x in tmp_path.iterdir() if "damaged" in x.name) == []


def test_zero_byte_file_is_reported_not_silently_empty(tmp_path):
    p = tmp_path / "history.sqlite3"
    p.write_bytes(b"")
    s = HistoryStore(p)
    assert "empty (0 bytes)" in s.recovery_notice and "kept at" in s.recovery_notice
    assert [x for x in tmp_path.iterdir() if ".damaged-" in x.name]
    s.add_message(s.create_conversation("new").id, "user", "hi")  # the fresh store works
    s.close()


def test_garbage_file_is_moved_aside(tmp_path):
    p = tmp_path / "history.sqlite3"
    p.write_bytes(b"this is not a database at all" * 100)
    s = HistoryStore(p)
    assert "damaged" in s.recovery_notice and "nothing in it could be read back" in s.recovery_notice
    aside = [x for x in tmp_path.iterdir() if ".damaged-" in x.name]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    s.close()


def test_garbled_pages_recover_what_sqlite_can_read(tmp_path):
    p = tmp_path / "history.sqlite3"
    _fill(p)
    data = bytearray(p.read_bytes())
    page = 4096
    n_pages = len(data) // page
    for k in range(n_pages // 2, n_pages // 2 + 3):  # garble three pages in the middle
        data[k * page:(k + 1) * page] = bytes([0xA5]) * page
    p.write_bytes(bytes(data))
    s = HistoryStore(p)
    notice = s.recovery_notice
    assert "damaged" in notice and "kept at" in notice and "were recovered" in notice
    n = s.count_conversations()
    assert 0 < n <= 30
    msgs = [m for c in s.list_conversations(limit=100) for m in s.messages(c.id)]
    assert len(msgs) > 200 and all(m.content.startswith("message ") for m in msgs)
    s.close()


def test_salvage_keeps_a_replys_versions_and_an_edits_branches(tmp_path):
    from desktop_app.core import history_versions as V

    p = tmp_path / "history.sqlite3"
    s = HistoryStore(p)
    c = s.create_conversation("Versions")
    u = s.add_message(c.id, "user", "first question")
    a = s.add_message(c.id, "assistant", "answer one")
    new = s.add_message(c.id, "assistant", "", finished=False)
    V.start_regenerated(s, new.id, V.versions_of(s.get_message(a.id)))
    s.delete_message(a.id)
    s.finish_message(new.id, "answer two")
    V.settle(s, new.id)
    V.branch_edit(s, u.id, "second question")
    s.add_message(c.id, "assistant", "answer to the edit")
    s.close()
    con = sqlite3.connect(p)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    p.write_bytes(p.read_bytes()[:-4096] + bytes([0xA5]) * 4096)  # the last page garbled
    s = HistoryStore(p)
    assert "damaged" in s.recovery_notice
    (conv,) = [x for x in s.list_conversations(limit=10) if s.messages(x.id)]
    user = s.messages(conv.id)[0]
    assert user.content == "second question" and V.position(user) == (1, 2)
    V.show_branch(s, user.id, 0)  # the old branch comes back, with the reply's two versions
    msgs = s.messages(conv.id)
    assert [m.content for m in msgs] == ["first question", "answer two"]
    assert [v["content"] for v in V.versions_of(msgs[1])] == ["answer one", "answer two"]
    s.close()


def test_salvage_drops_a_versions_value_of_the_wrong_shape():
    from desktop_app.core.history_recovery import _versions

    assert _versions({"all": [{"content": "a"}, {"content": "b"}], "current": 1})["current"] == 1
    for bad in ({"all": "x", "current": 0}, {"all": [{"content": "a"}], "current": 5}, {"all": [3], "current": 0},
                {"all": [], "current": 0}, {"current": 0}, {"all": [{"content": 1}], "current": 0}):
        assert _versions(bad) == {}
