"""The main window: title, three tabs, status bar with hardware, nothing heavy on the GUI thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app.ui.main_window import MainWindow

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.start()
    yield win
    win.close()


def test_window_has_title_tabs_and_hardware_status(window, qtbot):
    assert window.windowTitle() == "Atelier"
    labels = [window.tabs.tabText(i).replace("&", "") for i in range(window.tabs.count())]
    assert labels == ["Chat", "Image Studio", "Models"]
    qtbot.waitUntil(lambda: window.ctx.hardware is not None, timeout=10000)
    text = window.hardware_label.text()
    assert "RAM" in text and ("CPU only" in text or "VRAM" in text)
    SHOTS.mkdir(exist_ok=True)
    assert window.grab().save(str(SHOTS / "main_window.png"))


def test_every_visible_control_has_an_accessible_name(window, qtbot):
    from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit, QTextEdit

    qtbot.waitUntil(lambda: window.ctx.hardware is not None, timeout=10000)
    missing = []
    for i in range(window.tabs.count()):  # every tab, each shown in turn
        window.tabs.setCurrentIndex(i)
        qtbot.waitUntil(lambda: window._slots[i].tab is not None and window._slots[i].tab.isVisible(), timeout=10000)
        for cls in (QAbstractButton, QLineEdit, QPlainTextEdit, QTextEdit, QComboBox, QAbstractSpinBox):
            for w in window.findChildren(cls):
                if w.isVisibleTo(window) and not w.accessibleName() and not getattr(w, "text", lambda: "")():
                    missing.append(f"tab {i}: {type(w).__name__} {w.objectName()!r}")
    assert not missing, missing


def test_tabs_are_reachable_by_keyboard(window, qtbot):
    """Ctrl+1/2/3 switch tabs; Tab moves the focus through the controls of the current tab."""
    from PySide6.QtCore import Qt

    for i, key in enumerate((Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3)):
        qtbot.keyClick(window, key, Qt.KeyboardModifier.ControlModifier)
        assert window.tabs.currentIndex() == i
    window.tabs.setCurrentIndex(0)
    qtbot.waitUntil(lambda: window.chat_tab.isVisible(), timeout=10000)
    window.activateWindow()
    seen = set()
    w = window.focusWidget() or window.chat_tab
    w.setFocus()
    for _ in range(40):
        qtbot.keyClick(window.focusWidget() or window, Qt.Key.Key_Tab)
        fw = window.focusWidget()
        if fw is not None:
            seen.add(fw.objectName() or type(fw).__name__)
    assert len(seen) >= 5, seen


def test_hardware_profile_drives_status_bar(qtbot, tmp_path, monkeypatch):
    profile = {
        "cpu": {"name": "Test CPU", "cores": 16, "flags": ["avx2"]},
        "ram_total_bytes": 64 * 1024**3,
        "ram_available_bytes": 60 * 1024**3,
        "gpus": [{"vendor": "nvidia", "name": "NVIDIA GeForce RTX 4090", "vram_total_bytes": 24 * 1024**3,
                  "vram_free_bytes": 23 * 1024**3}],
        "llama_backend": "cuda",
    }
    p = tmp_path / "hw.json"
    p.write_text(json.dumps(profile))
    monkeypatch.setenv("ATELIER_HARDWARE", str(p))
    from desktop_app.core import hardware

    hardware.detect_hardware(refresh=True)
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.start()
    qtbot.waitUntil(lambda: win.ctx.hardware is not None, timeout=10000)
    assert "RTX 4090" in win.hardware_label.text() and "24 GB VRAM" in win.hardware_label.text()
    win.close()
    hardware.detect_hardware(refresh=True)


def test_startup_imports_nothing_heavy_on_gui_thread(tmp_path):
    """Window shown, start-up done: torch, diffusers and llama_cpp are not in the GUI process."""
    code = r"""
import sys
from desktop_app.app import create_app
from desktop_app.ui.main_window import MainWindow
app = create_app()
win = MainWindow(); win.show(); win.start()
from PySide6.QtCore import QTimer
QTimer.singleShot(1500, app.quit)
app.exec()
win.close()
print([m for m in ("torch", "diffusers", "llama_cpp", "transformers") if m in sys.modules])
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", ATELIER_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_start_registers_read_only_model_folders(qtbot, tmp_path, tiny_gguf):
    """An admin-provisioned folder in settings.json is registered at start-up, in the background."""
    import shutil

    from desktop_app.core.settings import Settings

    share = tmp_path / "share"
    share.mkdir()
    shutil.copy(tiny_gguf, share / "provisioned.gguf")
    Settings().set("extra_model_dirs", [str(share)])
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.start()
    qtbot.waitUntil(lambda: any(r.path.endswith("provisioned.gguf") for r in win.ctx.library.list()), timeout=10000)
    rec = next(r for r in win.ctx.library.list() if r.path.endswith("provisioned.gguf"))
    assert rec.managed is False
    win.close()
