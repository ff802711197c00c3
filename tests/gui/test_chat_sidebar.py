"""The conversation panel only lays out and asks: its signals carry what the user did."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from desktop_app.core.history import PrivateHistory
from desktop_app.ui.chat.sidebar import ConversationSidebar

pytestmark = pytest.mark.gui


def test_search_is_debounced_and_a_click_asks_to_open(qtbot):
    sb = ConversationSidebar()
    qtbot.addWidget(sb)
    store = PrivateHistory()
    cids = [store.create_conversation(f"chat {i}").id for i in range(3)]
    sb.conv_model.set_store(store)
    searched = []
    sb.search_changed.connect(searched.append)
    with qtbot.waitSignal(sb.search_changed, timeout=2000):
        qtbot.keyClicks(sb.search_edit, "chat 1")
    assert searched == ["chat 1"]  # one signal for the whole word
    sb.search_edit.clear()
    sb.show()
    qtbot.waitExposed(sb)
    sb.conv_model.refresh()
    row = sb.conv_model.row_of(cids[0])
    rect = sb.conv_view.visualRect(sb.conv_model.index(row))
    with qtbot.waitSignal(sb.open_requested, timeout=2000) as opened:
        qtbot.mouseClick(sb.conv_view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened.args == [cids[0]]
    with qtbot.waitSignal(sb.private_toggled, timeout=2000) as toggled:
        sb.private_button.click()
    assert toggled.args == [True]
    store.close()
