"""Issue 13: Regenerate keeps the earlier answers as versions of the reply (‹ k/n ›); the shown one
is what the model reads next; a regenerated reply that comes to nothing gives the answer it
replaced back; an old history file gains the column by its migration, nothing lost."""

from __future__ import annotations

import sqlite3

from desktop_app.core import history_versions as V
from desktop_app.core.history import HistoryStore
from desktop_app.core.history_schema import MIGRATIONS, SCHEMA_VERSION


def regenerate(h: HistoryStore, cid: int, text: str | None) -> int:
    """What the Chat tab does: keep the last reply's versions, replace it, stream the new one."""
    last = [m for m in h.messages(cid) if m.role == "assistant"][-1]
    earlier = V.versions_of(h.get_message(last.id))
    h.truncate_after(last.id, inclusive=True)
    new = h.add_message(cid, "assistant", "", finished=False)
    V.start_regenerated(h, new.id, earlier)
    if text is None:  # it came to nothing (a failure, or stopped before a word)
        back = V.drop_pending(h, new.id)
        assert back is not None
        return new.id
    h.finish_message(new.id, text, stats={"tokens": len(text.split())})
    V.settle(h, new.id)
    return new.id


def test_regenerate_keeps_every_answer_and_the_shown_one_is_read_next():
    with HistoryStore() as h:
        c = h.create_conversation("Haiku")
        h.add_message(c.id, "user", "A haiku about rain?")
        h.add_message(c.id, "assistant", "first answer")
        mid = regenerate(h, c.id, "second answer")
        mid = regenerate(h, c.id, "third answer")
        m = h.get_message(mid)
        assert V.position(m) == (2, 3) and m.content == "third answer"
        assert [v["content"] for v in V.versions_of(m)] == ["first answer", "second answer", "third answer"]
        m = V.show_version(h, mid, 0)
        assert V.position(m) == (0, 3) and m.content == "first answer"
        assert [x.content for x in h.messages(c.id)] == ["A haiku about rain?", "first answer"]  # the model's context
        assert V.position(V.show_version(h, mid, 99)) == (2, 3)  # clamped
        # a new regenerate from version 1 keeps all three and adds the fourth
        V.show_version(h, mid, 1)
        mid = regenerate(h, c.id, "fourth answer")
        assert [v["content"] for v in V.versions_of(h.get_message(mid))] == [
            "first answer", "second answer", "third answer", "fourth answer"]
        assert V.versions_of(h.get_message(mid))[3]["stats"] == {"tokens": 2}


def test_a_regenerated_reply_that_came_to_nothing_gives_the_old_answer_back():
    with HistoryStore() as h:
        c = h.create_conversation("x")
        h.add_message(c.id, "user", "hi")
        h.add_message(c.id, "assistant", "the only answer")
        mid = regenerate(h, c.id, None)
        m = h.get_message(mid)
        assert m.content == "the only answer" and V.position(m) == (0, 1) and m.versions == {}
        mid = regenerate(h, c.id, "another")
        mid = regenerate(h, c.id, None)
        assert V.position(h.get_message(mid)) == (1, 2) and h.get_message(mid).content == "another"


def test_versions_are_bounded():
    with HistoryStore() as h:
        c = h.create_conversation("x")
        h.add_message(c.id, "user", "hi")
        h.add_message(c.id, "assistant", "v0")
        for i in range(1, V.MAX_VERSIONS + 5):
            mid = regenerate(h, c.id, f"v{i}")
        kept = V.versions_of(h.get_message(mid))
        assert len(kept) == V.MAX_VERSIONS and kept[-1]["content"] == f"v{V.MAX_VERSIONS + 4}"


def test_an_old_history_file_gains_versions_by_migration(tmp_path):
    path = tmp_path / "history.sqlite3"
    con = sqlite3.connect(path)
    for v in range(SCHEMA_VERSION - 1):  # the schema before this migration, with a conversation in it
        step = MIGRATIONS[v]
        con.executescript((step() if callable(step) else step) + f";PRAGMA user_version={v + 1};")
    con.execute("INSERT INTO conversations (title, created, updated) VALUES ('old', 1, 1)")
    con.execute("INSERT INTO messages (conversation_id, role, content, created) VALUES (1, 'assistant', 'kept', 1)")
    con.commit()
    con.close()
    with HistoryStore(path) as h:
        assert h.schema_version == SCHEMA_VERSION
        (m,) = h.messages(1)
        assert m.content == "kept" and m.versions == {} and V.position(m) == (0, 1)


def test_an_edit_branches_and_each_branch_keeps_what_followed_it():
    with HistoryStore() as h:
        c = h.create_conversation("Branches")
        for role, text in (("user", "u1"), ("assistant", "a1"), ("user", "u2"), ("assistant", "a2"),
                           ("user", "u3"), ("assistant", "a3")):
            h.add_message(c.id, role, text)
        u2 = [m for m in h.messages(c.id) if m.content == "u2"][0]
        m = V.branch_edit(h, u2.id, "u2 edited")
        assert m.content == "u2 edited" and V.position(m) == (1, 2)
        assert [x.content for x in h.messages(c.id)] == ["u1", "a1", "u2 edited"]  # the old branch left
        h.add_message(c.id, "assistant", "a2 for the edit")
        m = V.show_branch(h, u2.id, 0)  # ‹ : the old branch comes back whole
        assert [x.content for x in h.messages(c.id)] == ["u1", "a1", "u2", "a2", "u3", "a3"]
        assert V.position(m) == (0, 2)
        m = V.show_branch(h, u2.id, 1)  # › : and the new one
        assert [x.content for x in h.messages(c.id)] == ["u1", "a1", "u2 edited", "a2 for the edit"]
        # a regenerated reply inside a branch keeps its versions when the branch is left and taken back
        last = [x for x in h.messages(c.id) if x.role == "assistant"][-1]
        earlier = V.versions_of(last)
        h.truncate_after(last.id, inclusive=True)
        new = h.add_message(c.id, "assistant", "", finished=False)
        V.start_regenerated(h, new.id, earlier)
        h.finish_message(new.id, "a2 again")
        V.settle(h, new.id)
        V.show_branch(h, u2.id, 0)
        V.show_branch(h, u2.id, 1)
        back = [x for x in h.messages(c.id) if x.role == "assistant"][-1]
        assert back.content == "a2 again" and V.position(back) == (1, 2)
        assert [v["content"] for v in V.versions_of(back)] == ["a2 for the edit", "a2 again"]


def test_a_branch_left_and_taken_back_keeps_its_inline_image():
    with HistoryStore() as h:
        c = h.create_conversation("Images")
        u = h.add_message(c.id, "user", "/imagine a red fox")
        h.add_message(c.id, "assistant", "Image: a red fox", params={"image": {"path": "/x/fox.png", "seed": 7}})
        V.branch_edit(h, u.id, "/imagine a blue fox")
        V.show_branch(h, u.id, 0)
        back = h.messages(c.id)[-1]
        assert back.content == "Image: a red fox" and back.params["image"] == {"path": "/x/fox.png", "seed": 7}
