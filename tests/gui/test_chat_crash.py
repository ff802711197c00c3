"""A model that kills the chat engine mid-reply: the window stays, the partial reply is kept and
marked, the user is told why, and the next message restarts the engine (issue 9, item 3)."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from desktop_app.core.library import ModelRecord
from desktop_app.ui.main_window import MainWindow
from tests.helpers import write_tiny_llama_gguf

pytestmark = [pytest.mark.gui]

TIMEOUT = 60_000
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


@pytest.fixture
def window(qtbot, monkeypatch):
    monkeypatch.setenv("ATELIER_TEST_CHAT_DELAY", "0.05")  # read by the engine's child: a reply takes a while
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.start()
    yield win
    win.close()


def _load(qtbot, win, rec: ModelRecord):
    """Choose the model in the picker, as a user does (a send loads the picker's model)."""
    tab = win.chat_tab
    win.ctx.library.add(rec)
    win.ctx.library_changed.emit()
    qtbot.waitUntil(lambda: tab.model_combo.findData(rec.id) >= 0, timeout=TIMEOUT)
    i = tab.model_combo.findData(rec.id)
    tab.model_combo.setCurrentIndex(i)
    with qtbot.waitSignal(tab.model_loaded, timeout=TIMEOUT, check_params_cb=lambda d: d.get("model_id") == rec.id) \
            as blocker:
        tab.model_combo.activated.emit(i)
    return blocker.args[0]


def test_engine_killed_mid_reply(window, qtbot, tiny_gguf, tmp_path):
    tab = window.chat_tab
    info = _load(qtbot, window, ModelRecord(id="test/tiny", task="chat", format="gguf", path=str(tiny_gguf),
                                            size_bytes=tiny_gguf.stat().st_size, name="Tiny"))
    pid = info["engine_pid"]
    assert pid and pid != os.getpid()
    tab.params.max_tokens.setValue(300)
    tab.params.temperature.setValue(0.0)
    with qtbot.waitSignal(tab.reply_finished, timeout=TIMEOUT) as blocker:
        tab.send("w1 w2 w3")
        qtbot.waitUntil(lambda: len(tab.view._stream_content) > 3, timeout=TIMEOUT)
        os.kill(pid, signal.SIGKILL)
    assert blocker.args[0]["finish_reason"] == "crashed"
    assert window.isVisible()
    reply = tab.view.messages()[-1]
    assert reply.role == "assistant" and reply.content  # the partial reply is kept ...
    w = tab.view.widget_for(reply.id)
    assert "crashed" in w.stats_label.text()  # ... and marked
    assert "crashed the chat engine" in tab.notice.text() and "next message restarts" in tab.notice.text()
    assert tab.status_label.text() == "The chat engine crashed"
    con = sqlite3.connect(str(tab.store.path))
    saved = con.execute("SELECT content, finished, stats FROM messages WHERE role='assistant'").fetchall()
    con.close()
    assert saved[0][0] == reply.content and saved[0][1] == 1 and "crashed" in saved[0][2]
    qtbot.waitUntil(lambda: w.stats_label.width() >= w.stats_label.sizeHint().width(), timeout=5000)  # laid out
    SHOTS.mkdir(exist_ok=True)
    assert window.grab().save(str(SHOTS / "chat_engine_crashed.png"))

    tab.params.max_tokens.setValue(4)
    with qtbot.waitSignal(tab.reply_finished, timeout=TIMEOUT) as blocker:  # the next message restarts it
        tab.send("w4")
    assert blocker.args[0]["finish_reason"] in ("stop", "length") and blocker.args[0]["tokens"] > 0


def test_a_model_that_aborts_llama_cpp_never_closes_the_window(window, qtbot, tmp_path):
    tab = window.chat_tab
    bad = write_tiny_llama_gguf(tmp_path / "nan.gguf", rms_eps=float("nan"))  # registered as-is (no import check)
    _load(qtbot, window, ModelRecord(id="test/nan", task="chat", format="gguf", path=str(bad),
                                     size_bytes=bad.stat().st_size, name="Broken"))
    n_before = len(tab.view.messages())
    with qtbot.waitSignal(tab.reply_finished, timeout=TIMEOUT) as blocker:
        tab.send("w1")
    assert blocker.args[0]["finish_reason"] == "crashed" and window.isVisible()
    assert "SIGABRT" in tab.notice.text()
    msgs = tab.view.messages()
    assert len(msgs) == n_before + 1 and msgs[-1].role == "user"  # no empty reply left behind
