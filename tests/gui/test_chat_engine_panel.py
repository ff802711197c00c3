"""Issue 11: the chat Parameters show and change the engine's options; what the loaded model
really uses (auto resolved) is shown; a combination llama.cpp refuses is said in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_app.core.cpu_threads import auto_threads
from desktop_app.core.settings import Settings
from desktop_app.ui.main_window import MainWindow

pytestmark = [pytest.mark.gui, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


def test_engine_settings_in_use_and_changed(qtbot, starter_model):
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.start()
    tab = win.chat_tab
    panel = tab.params.engine
    tab.params_button.setChecked(True)
    with qtbot.waitSignal(tab.model_loaded, timeout=120_000) as loaded:
        tab.load_model(tab.chosen_model)
    assert loaded.args[0]["n_threads"] == auto_threads()
    text = panel.in_use.text()
    assert f"{auto_threads()} threads (auto)" in text and "flash attention off (auto)" in text and "KV f16" in text
    assert panel.threads.text().startswith("auto") and panel.flash_attn.currentText() == "auto"

    # a quantized KV cache: saved as the user's setting, the idle model is loaded again with it
    with qtbot.waitSignal(tab.model_loaded, timeout=120_000) as loaded:
        panel.kv_type.setCurrentText("q8_0")
    assert loaded.args[0]["kv_type"] == "q8_0" and "KV q8_0" in panel.in_use.text()
    assert Settings().get("chat_kv_cache") == "q8_0"
    SHOTS.mkdir(exist_ok=True)
    assert tab.params.grab().save(str(SHOTS / "chat_engine_panel.png"))

    # flash attention off with a quantized cache: refused in one line, nothing saved or reloaded
    reloads = []
    tab.model_loaded.connect(reloads.append)
    panel.flash_attn.setCurrentText("off")
    assert panel.problem.isVisible() and "needs flash attention" in panel.problem.text()
    assert Settings().get("chat_flash_attn") == "auto" and not reloads
    win.close()
