"""The reason history is off (or was recovered) stays in view: switching to a private chat or a new
chat does not clear it (issue 9, item 6)."""

from __future__ import annotations

import pytest

from desktop_app.core.paths import get_paths
from desktop_app.ui.main_window import MainWindow

pytestmark = [pytest.mark.gui]


def test_recovered_history_notice_survives_private_and_new_chat(qtbot):
    db = get_paths().data / "history.sqlite3"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"\x00garbled" * 512)
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.start()
    tab = win.chat_tab
    try:
        qtbot.waitUntil(tab.isVisible, timeout=10_000)  # the tabs are built right after the first paint
        assert tab.notice.isVisible()
        assert "history was damaged" in tab.notice.text() and "kept at" in tab.notice.text()
        tab.set_private(True)
        assert tab.notice.isVisible() and "history was damaged" in tab.notice.text()
        tab.set_private(False)
        tab.new_conversation()
        assert tab.notice.isVisible() and "history was damaged" in tab.notice.text()
        assert list(db.parent.glob("history.damaged-*.sqlite3"))
    finally:
        win.close()
