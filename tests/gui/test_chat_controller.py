"""The Chat tab's controller without any widget (issue 10): load, reply, stop, follow-up work."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication

from desktop_app.core.history import PrivateHistory
from desktop_app.core.starter import STARTER_ID
from desktop_app.qt.context import AppContext
from desktop_app.ui.chat.controller import ChatController

pytestmark = pytest.mark.gui


@pytest.fixture
def ctl(qtbot, starter_model):
    ctx = AppContext()
    c = ChatController(ctx)
    yield c
    c.shutdown()
    ctx.shutdown()


def test_load_reply_stop_and_follow_up_without_widgets(ctl, qtbot):
    before = set(QApplication.allWidgets())
    with qtbot.waitSignal(ctl.loaded, timeout=60_000) as loaded:
        ctl.load(STARTER_ID, n_ctx=512)
    assert loaded.args[0]["model_id"] == STARTER_ID and ctl.loaded_model == STARTER_ID and not ctl.loading

    store = PrivateHistory()
    conv = store.create_conversation("t")
    store.add_message(conv.id, "user", "Say hello.")
    deltas = []
    ctl.reply_delta.connect(lambda k, t: deltas.append((k, t)))
    with qtbot.waitSignal(ctl.reply_ended, timeout=60_000) as ended:
        rid = ctl.start_reply(store, conv.id, [{"role": "user", "content": "Say hello."}],
                              {"max_tokens": 8, "temperature": 0.0, "seed": 1}, STARTER_ID, "truncate_oldest")
        assert ctl.generating and ctl.reply_id == rid
    end = ended.args[0]
    assert end.reason == "done" and end.reply_id == rid and end.content and deltas
    assert store.get_message(rid).content == end.content and not ctl.generating

    # stop mid-reply, then work queued behind it runs after the reply saved itself
    order = []
    ctl.reply_delta.connect(lambda k, t: ctl.stop() if not order else None)
    with qtbot.waitSignal(ctl.reply_ended, timeout=60_000) as ended:
        rid2 = ctl.start_reply(store, conv.id, [{"role": "user", "content": "Tell a long story."}],
                               {"max_tokens": 400}, STARTER_ID, "truncate_oldest")
        follow = ctl.after_reply(lambda: order.append(store.get_message(rid2).finished), "check")
    qtbot.waitUntil(lambda: follow.done, timeout=10_000)
    assert ended.args[0].stats.get("finish_reason") in ("cancelled", None) or ended.args[0].reason == "cancelled"
    assert order == [True]  # the stopped reply was saved (finished) before the follow-up ran
    assert not set(QApplication.allWidgets()) - before  # the controller builds no widget


def test_a_failed_load_is_a_signal_with_the_reason(ctl, qtbot, tmp_path):
    from desktop_app.core.library import ModelRecord

    missing = ModelRecord(id="gone", task="chat", format="gguf", path=str(tmp_path / "gone.gguf"), size_bytes=1)
    ctl.ctx.library.add(missing)
    with qtbot.waitSignal(ctl.load_failed, timeout=30_000) as failed:
        ctl.load("gone")
    assert "missing" in failed.args[0] and ctl.load_error and ctl.loaded_model is None
