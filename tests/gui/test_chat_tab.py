"""The Chat tab with the real starter model (SmolLM2-135M): send, stream, stop, switch, regenerate,
edit and resend, private chat, focus, clean close mid-generation."""

from __future__ import annotations

import sqlite3
import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from desktop_app.ui.main_window import MainWindow

pytestmark = [pytest.mark.gui, pytest.mark.slow]

REPLY_TIMEOUT = 120_000


@pytest.fixture
def window(qtbot, starter_model):
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.start()
    tab = win.chat_tab
    tab.params.max_tokens.setValue(24)
    tab.params.temperature.setValue(0.0)
    tab.params.seed.setValue(1)
    yield win
    win.close()


def _send_by_keyboard(qtbot, tab, text):
    qtbot.keyClicks(tab.input, text)
    qtbot.keyClick(tab.input, Qt.Key.Key_Return)


def _db_rows(tab, sql):
    con = sqlite3.connect(str(tab.store.path))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_send_stream_stop_regenerate_edit_and_switch(window, qtbot):
    tab = window.chat_tab
    qtbot.waitUntil(lambda: QApplication.focusWidget() is tab.input, timeout=5000)  # focused at start

    # send with Enter: a streamed reply appears, is saved, and the box has the focus again
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT) as blocker:
        _send_by_keyboard(qtbot, tab, "What is the capital of France?")
        assert tab.input.toPlainText() == ""
        assert tab.generating and tab.send_button.text() == "Stop"
    stats = blocker.args[0]
    assert stats["finish_reason"] in ("stop", "length") and stats["tokens"] > 0
    msgs = tab.view.messages()
    assert [m.role for m in msgs] == ["user", "assistant"] and msgs[1].content.strip()
    assert tab.view.flushes >= 1
    assert QApplication.focusWidget() is tab.input
    assert tab.send_button.text() == "Send"
    assert "context" in tab.ctx_meter.format() and tab.ctx_meter.value() > 0
    assert "SmolLM2" in window.loaded_label.text()
    assert tab.plan_warning.isVisible() and "CPU" in tab.plan_warning.text()  # never a silent CPU fallback
    qtbot.waitUntil(lambda: "CPU" in tab.model_combo.itemText(0), timeout=20_000)  # fit badge, computed off-thread
    assert "SmolLM2" in tab.model_combo.itemText(0)
    saved = _db_rows(tab, "SELECT role, content, finished FROM messages ORDER BY id")
    assert saved == [("user", "What is the capital of France?", 1), ("assistant", msgs[1].content, 1)]
    first_conv = tab.conversation_id

    # stop mid-stream with Esc: returns quickly, keeps the partial reply; the next send works
    tab.params.max_tokens.setValue(400)
    _send_by_keyboard(qtbot, tab, "Write a long story about a dragon who learns to bake bread.")
    qtbot.waitUntil(lambda: tab.view.widget_for(tab.view.streaming_id or -1) is not None
                    and tab.view._stream_content.strip() != "", timeout=REPLY_TIMEOUT)
    with qtbot.waitSignal(tab.reply_finished, timeout=5000) as blocker:
        t0 = time.monotonic()
        qtbot.keyClick(tab.input, Qt.Key.Key_Escape)
    assert time.monotonic() - t0 < 2.0
    assert blocker.args[0]["finish_reason"] == "cancelled"
    partial = tab.view.messages()[-1]
    assert partial.role == "assistant" and partial.content
    tab.params.max_tokens.setValue(16)
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT) as blocker:
        _send_by_keyboard(qtbot, tab, "Say hello.")
    assert blocker.args[0]["finish_reason"] in ("stop", "length")
    assert len(tab.view.messages()) == 6

    # regenerate the last reply: it is replaced, not added, and the earlier answer stays as a version
    old_last = tab.view.messages()[-1].id
    old_text = tab.view.messages()[-1].content
    tab.params.seed.setValue(7)  # another seed: another answer
    tab.params.temperature.setValue(1.0)
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT):
        tab.view.widget_for(old_last).buttons["regenerate"].click()
    msgs = tab.view.messages()
    assert len(msgs) == 6 and msgs[-1].id != old_last and msgs[-1].role == "assistant"
    assert tab.store.get_message(old_last) is None
    new = tab.view.widget_for(msgs[-1].id)
    new_text = msgs[-1].content
    assert new.version_label.isVisible() and new.version_label.text() == "2/2" and new.version_prev.isEnabled()
    import os
    from pathlib import Path

    shots = Path(__file__).resolve().parents[2] / "screenshots"
    os.makedirs(shots, exist_ok=True)
    assert window.grab().save(str(shots / "chat_versions.png"))
    new.version_prev.click()  # ‹ : the earlier answer, and it is what the model reads next
    assert new.version_label.text() == "1/2" and tab.view.messages()[-1].content == old_text
    assert tab.store.get_message(msgs[-1].id).content == old_text
    new.version_next.click()
    assert new.version_label.text() == "2/2" and tab.store.get_message(msgs[-1].id).content == new_text
    tab.params.temperature.setValue(0.0)
    tab.params.seed.setValue(1)

    # edit and resend the second user message: everything after it is removed, then answered again
    user2 = msgs[2]
    w = tab.view.widget_for(user2.id)
    w.buttons["edit"].click()  # inline: an editor in the bubble itself
    assert w.editor is not None and w.editor.toPlainText() == user2.content and not w.body.isVisible()
    qtbot.keyClick(w.editor, Qt.Key.Key_Escape)  # Esc cancels, nothing changes
    assert w.editor is None and w.body.isVisible() and len(tab.view.messages()) == 6
    w.buttons["edit"].click()
    w.editor.setPlainText("Name one fruit.")
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT):
        qtbot.keyClick(w.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Enter sends
    msgs = tab.view.messages()
    assert [m.role for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[2].content == "Name one fruit."
    saved = _db_rows(tab, f"SELECT content FROM messages WHERE conversation_id = {first_conv} ORDER BY id")
    assert [r[0] for r in saved][:3] == ["What is the capital of France?", msgs[1].content, "Name one fruit."]
    assert len(saved) == 4
    # the edit branched: ‹ on the edited message brings the earlier branch back whole, › the new one
    edited = tab.view.widget_for(user2.id)
    assert edited.version_label.text() == "2/2"
    edited.version_prev.click()
    assert [m.content for m in tab.view.messages()][2] == user2.content and len(tab.view.messages()) == 6
    tab.view.widget_for(user2.id).version_next.click()
    assert [m.content for m in tab.view.messages()][2] == "Name one fruit." and len(tab.view.messages()) == 4

    # switch: a new chat (Ctrl+N), then back to the first one from the list
    qtbot.keyClick(tab.input, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert tab.view.messages() == [] and tab.conversation_id is None
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT):
        _send_by_keyboard(qtbot, tab, "Hi!")
    second_conv = tab.conversation_id
    assert second_conv != first_conv and tab.conv_model.rowCount() == 2
    row = tab.conv_model.row_of(first_conv)
    tab.conv_view.clicked.emit(tab.conv_model.index(row))
    assert tab.conversation_id == first_conv
    assert [m.content for m in tab.view.messages()][2] == "Name one fruit."
    # the status row tells this chat's truth: not the other chat's speed and TTFT; its own context use
    assert tab.status_label.text() == "" and tab.ttft_label.text() == ""
    last = [m for m in tab.view.messages() if m.role == "assistant"][-1].stats
    assert last["n_ctx"] > 0 and tab.ctx_meter.format() == f"context {last['context_used']}/{last['n_ctx']}"
    # a reply still streaming when the user opens another chat: its figures do not land there
    tab.params.max_tokens.setValue(400)
    _send_by_keyboard(qtbot, tab, "Write a long story about a cat who sails.")
    qtbot.waitUntil(lambda: tab.status_row.first_delta_at is not None, timeout=REPLY_TIMEOUT)
    with qtbot.waitSignal(tab.reply_finished, timeout=10_000):
        qtbot.keyClick(tab.input, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert tab.status_label.text() == "" and tab.ttft_label.text() == "" and tab.ctx_meter.format() == "context –"
    tab.params.max_tokens.setValue(24)

    # search the list by text
    tab.conv_model.set_search("fruit")
    assert [tab.conv_model.conversation_at(i).id for i in range(tab.conv_model.rowCount())] == [first_conv]


def test_private_chat_leaves_nothing_on_disk(window, qtbot):
    tab = window.chat_tab
    tab.private_button.click()
    assert tab.private and tab.private_banner.isVisible()
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT):
        _send_by_keyboard(qtbot, tab, "My secret number is 918273.")
    assert [m.role for m in tab.view.messages()] == ["user", "assistant"]
    assert _db_rows(tab, "SELECT COUNT(*) FROM conversations") == [(0,)]
    assert _db_rows(tab, "SELECT COUNT(*) FROM messages") == [(0,)]
    for f in tab.store.path.parent.glob("history.sqlite3*"):
        assert b"918273" not in f.read_bytes()
    tab.private_button.click()  # leaving private mode throws the chat away
    assert not tab.private and tab.view.messages() == []


def test_delete_all_history_vacuums(window, qtbot):
    tab = window.chat_tab
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT):
        _send_by_keyboard(qtbot, tab, "Remember the word pelican-42.")
    assert tab.conv_model.rowCount() == 1
    tab.delete_all_history()
    qtbot.waitUntil(lambda: getattr(tab, "history_cleared", False), timeout=20_000)
    assert tab.conv_model.rowCount() == 0 and tab.view.messages() == []
    assert _db_rows(tab, "SELECT COUNT(*) FROM messages") == [(0,)]
    for f in tab.store.path.parent.glob("history.sqlite3*"):
        assert b"pelican-42" not in f.read_bytes()


def test_close_mid_generation_exits_cleanly(qtbot, starter_model):
    from desktop_app.qt.threads import running_qthreads

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.start()
    tab = win.chat_tab
    tab.params.max_tokens.setValue(400)
    _send_by_keyboard(qtbot, tab, "Count from one to two hundred in words.")
    qtbot.waitUntil(lambda: tab.view._stream_content.strip() != "", timeout=REPLY_TIMEOUT)
    store_path = tab.store.path
    t0 = time.monotonic()
    win.close()
    assert time.monotonic() - t0 < 5.0
    assert running_qthreads() == []
    con = sqlite3.connect(str(store_path))
    rows = con.execute("SELECT role, finished, length(content) FROM messages ORDER BY id").fetchall()
    con.close()
    assert rows[0][0] == "user" and rows[1][0] == "assistant" and rows[1][1] == 1 and rows[1][2] > 0


def test_context_overflow_notice_and_stop_policy_asks(window, qtbot):
    tab = window.chat_tab
    tab.n_ctx_override = 256
    tab.params.max_tokens.setValue(32)
    long_text = "Please remember these words: " + " ".join(f"word{i}" for i in range(60))
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT):
        tab.send(long_text)
    assert tab.ctx_meter.maximum() == 256
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT):
        tab.send(long_text.replace("word", "item"))
    assert tab.notice.isVisible() and "no longer fit" in tab.notice.text()
    assert len(tab.view.messages()) == 4  # nothing is deleted: the old turns only stay out of the prompt

    # policy "stop": the user is asked, and "leave out the oldest" answers
    window.ctx.settings.set("context_overflow", "stop")
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT) as blocker:
        tab.send(long_text.replace("word", "thing"))
    assert blocker.args[0]["finish_reason"] == "error"
    qtbot.waitUntil(lambda: getattr(tab, "_overflow_box", None) is not None and tab._overflow_box.isVisible(),
                    timeout=5000)
    box = tab._overflow_box
    drop = next(b for b in box.buttons() if "oldest" in b.text())
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT) as blocker:
        drop.click()
    assert blocker.args[0]["finish_reason"] in ("stop", "length")
    assert [m.role for m in tab.view.messages()][-2:] == ["user", "assistant"]


def test_model_picker_switches_model(window, qtbot, tiny_gguf):
    from desktop_app.core.library import ModelRecord

    tab = window.chat_tab
    window.ctx.library.add(ModelRecord(id="test/tiny", task="chat", format="gguf", path=str(tiny_gguf),
                                       size_bytes=tiny_gguf.stat().st_size, name="Tiny test model"))
    window.ctx.library_changed.emit()
    qtbot.waitUntil(lambda: tab.model_combo.findData("test/tiny") >= 0, timeout=20_000)
    assert tab.model_combo.findData("smollm2-135m-instruct.q4_1.gguf") >= 0
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT):
        tab.send("Hello")
    assert "SmolLM2" in window.loaded_label.text()
    i = tab.model_combo.findData("test/tiny")
    tab.model_combo.setCurrentIndex(i)
    with qtbot.waitSignal(tab.model_loaded, timeout=REPLY_TIMEOUT) as blocker:
        tab.model_combo.activated.emit(i)
    assert blocker.args[0]["model_id"] == "test/tiny"
    assert window.loaded_label.text().startswith("Tiny test model")
    assert "no chat template" in tab.notice.text()  # the tiny file has none: said, not hidden
    with qtbot.waitSignal(tab.reply_finished, timeout=REPLY_TIMEOUT) as blocker:
        tab.send("Hi again")
    assert blocker.args[0]["finish_reason"] in ("stop", "length")
    assert tab.store.get_conversation(tab.conversation_id).model_id == "test/tiny"
