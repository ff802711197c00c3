"""Issue 13: the welcome page on first run (and from Help): this machine, the starter ready to chat,
picks for this machine with size, licence, fit and speed and a Download button, and the offline
ways in. Hardware profiles stand in for the GPUs this machine does not have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel, QPushButton

from desktop_app.core.settings import Settings
from desktop_app.ui.main_window import MainWindow

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "screenshots"


def use_profile(monkeypatch, name: str) -> None:
    monkeypatch.setenv("ATELIER_HARDWARE", str(ROOT / "tests" / "profiles" / f"{name}.json"))
    from desktop_app.core.hardware import detect_hardware

    detect_hardware(refresh=True)


@pytest.fixture
def first_run(atelier_home):
    (atelier_home / "config" / "settings.json").write_text("{}")  # a new user: nothing seen yet


def open_window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    win.start()
    return win


def picks_text(dlg, task: str) -> list[str]:
    box = dlg.findChild(type(dlg.machine_label.parent()), f"welcomePicks_{task}")
    return [w.text() for w in box.findChildren(QLabel)]


@pytest.mark.parametrize("profile, gpu_word", [("rtx4090_24gb", "RTX 4090"), ("cpu_only_8gb", "none")])
def test_first_run_shows_the_welcome_page_with_picks_for_this_machine(first_run, monkeypatch, qtbot, profile,
                                                                     gpu_word):
    use_profile(monkeypatch, profile)
    win = open_window(qtbot)
    qtbot.waitUntil(lambda: getattr(win, "welcome", None) is not None and win.welcome.isVisible(), timeout=5000)
    dlg = win.welcome
    qtbot.waitUntil(lambda: bool(dlg.picks), timeout=20000)
    machine = dlg.machine_label.text()
    assert "CPU:" in machine and "GB RAM" in machine and gpu_word in machine
    chat, image = dlg.picks["chat"], dlg.picks["image"]
    assert 1 <= len(chat) <= 3 and all(p.fit.fits for p in chat + image)
    if profile == "rtx4090_24gb":  # every pick all on the GPU: nothing partial is recommended here
        assert all(p.fit.plan == "gpu" for p in chat) and all(p.fit.plan == "gpu" for p in image)
    else:
        assert all(p.fit.plan == "cpu" and p.fit.speed not in ("slow", "very slow") for p in chat)
        assert all("tokens per second" in p.speed for p in chat)
    shown = " ".join(picks_text(dlg, "chat"))
    for p in chat:
        assert p.entry.family in shown and (p.entry.license or "see the model card") in shown
    SHOTS.mkdir(exist_ok=True)
    assert dlg.grab().save(str(SHOTS / f"welcome_{profile}.png"))

    # one click: the pick's download is queued (a restrictive licence is asked first)
    first = chat[0].entry
    asked = []
    monkeypatch.setattr(type(win.models_tab.catalog), "licence_box",
                        lambda self, e: asked.append(e) or _accepting_box(self))
    buttons = [b for b in dlg.findChildren(QPushButton) if b.objectName() == "welcomeDownload_chat_0"]
    monkeypatch.setattr(type(win.models_tab.downloads), "enqueue_catalog_entry",
                        lambda self, e: asked.append(("queued", e.id)) or "job")
    buttons[0].click()
    assert ("queued", first.id) in asked and win.tabs.currentIndex() == 2
    assert (first.needs_acceptance and asked[0] is first) or not first.needs_acceptance

    # closing it remembers that it was seen; Help › Welcome shows it again
    dlg.close()
    assert Settings().get("welcome_shown") is True
    win.close()
    win2 = open_window(qtbot)
    qtbot.wait(100)
    assert getattr(win2, "welcome", None) is None  # not on the next start
    assert win2.show_welcome().isVisible()
    win2.close()


def _accepting_box(parent):
    from PySide6.QtWidgets import QMessageBox

    class Box(QMessageBox):  # the licence dialog, answered "accept" (the dialog is the user boundary)
        def exec(self):
            return 0

        def clickedButton(self):  # noqa: N802 - Qt API
            return self.property("accept_button")

    box = Box(parent)
    box.setProperty("accept_button", box.addButton("Accept", QMessageBox.ButtonRole.AcceptRole))
    return box


def test_the_welcome_page_leads_to_chat_and_to_the_offline_ways_in(first_run, monkeypatch, qtbot):
    use_profile(monkeypatch, "laptop_rtx4060_8gb")
    win = open_window(qtbot)
    qtbot.waitUntil(lambda: getattr(win, "welcome", None) is not None, timeout=5000)
    win.welcome.chat_button.click()
    assert win.tabs.currentIndex() == 0 and not win.welcome.isVisible()
    win.show_welcome().import_button.click()
    assert win.tabs.currentIndex() == 2 and win.models_tab.sections.currentWidget() is win.models_tab.library
    opened = []
    monkeypatch.setattr(type(win.models_tab), "_on_settings_clicked", lambda self: opened.append(True))
    win.show_welcome().mirror_button.click()
    assert opened == [True]
    win.close()


def test_machine_lines_name_every_gpu_and_backend():
    from desktop_app.core.hardware import Hardware
    from desktop_app.ui.welcome import machine_lines

    hw = Hardware.from_dict(json.loads((ROOT / "tests" / "profiles" / "2x_a100_80gb.json").read_text()))
    lines = machine_lines(hw)
    assert sum(1 for line in lines if line.startswith("GPU:")) == 2
    assert any("llama.cpp (cuda)" in line for line in lines)
