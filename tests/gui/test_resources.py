"""Issue 13: the resources panel shows what is loaded and the memory its engine process really holds
(measured, at most once a second, off the GUI thread); Unload frees it and the next message loads
the model again. The real starter model in a real engine child."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QPushButton

from desktop_app.ui.main_window import MainWindow

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_resources_panel_measures_and_unloads_the_chat_model(qtbot, starter_model):
    import psutil

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.start()
    tab = win.chat_tab
    tab.params.max_tokens.setValue(8)
    with qtbot.waitSignal(tab.reply_finished, timeout=120_000):
        tab.input.setPlainText("Hello!")
        tab.send()
    desc, pid = win.ctx.loaded_slots()["chat"]
    assert "SmolLM2" in desc and pid and psutil.pid_exists(pid)
    panel = win.show_resources()
    qtbot.waitUntil(lambda: panel.usage is not None and bool(panel.usage.slots), timeout=10_000)
    (row,) = panel.usage.slots
    assert row.slot == "chat" and row.pid == pid
    assert row.ram_bytes > 50 * 2**20  # the engine child with the model in it, measured
    assert "RAM:" in panel.totals.text() and "used of" in panel.totals.text()
    from pathlib import Path

    shots = Path(__file__).resolve().parents[2] / "screenshots"
    shots.mkdir(exist_ok=True)
    from PySide6.QtWidgets import QCheckBox, QLabel

    qtbot.waitUntil(lambda: panel.findChild(QLabel, "resourcesModel_chat") is not None
                    and panel.findChild(QLabel, "resourcesModel_chat").isVisible(), timeout=5_000)
    assert "SmolLM2" in panel.findChild(QLabel, "resourcesModel_chat").text()
    assert panel.findChild(QCheckBox, "resourcesPin_chat") is not None  # Pin: never moved by the broker
    assert panel.grab().save(str(shots / "resources_panel.png"))
    n = panel.measurements
    qtbot.wait(2500)
    assert 1 <= panel.measurements - n <= 3  # refreshed while shown, never faster than 1 Hz
    unload = next(b for b in panel.findChildren(QPushButton) if b.objectName() == "resourcesUnload_chat")
    unload.click()
    qtbot.waitUntil(lambda: "chat" not in win.ctx.loaded_slots(), timeout=20_000)
    qtbot.waitUntil(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                    timeout=20_000)
    assert "unloaded" in tab.status_label.text()
    qtbot.waitUntil(lambda: panel.usage is not None and not panel.usage.slots, timeout=5000)
    # the next message loads it again
    with qtbot.waitSignal(tab.reply_finished, timeout=120_000):
        tab.input.setPlainText("Again?")
        tab.send()
    assert "chat" in win.ctx.loaded_slots()
    panel.close()
    win.close()
