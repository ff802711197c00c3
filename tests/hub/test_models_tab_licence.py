"""Models tab: a non-gated hub repo under a restrictive licence (llama3.2) still shows the licence
dialog before anything is queued, and downloads once the licence is accepted."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from desktop_app.core.library import Library  # noqa: E402
from tests.gui.test_models_tab import CPU_16GB, click_in_dialog, make_tab, use_profile  # noqa: E402,F401


def test_restrictive_non_gated_hub_repo_asks_for_licence(make_tab, qtbot, fake_hub, gguf_bytes, monkeypatch,  # noqa: F811
                                                        tmp_path):
    use_profile(monkeypatch, tmp_path, CPU_16GB)
    fake_hub.add_repo("someuser/Llama-3.2-1B-Instruct-GGUF", {"l-Q4_K_M.gguf": gguf_bytes}, tags=["gguf"],
                      license="llama3.2")
    h = make_tab()
    hub = h.tab.hub
    hub.search("someuser", "chat")
    qtbot.waitUntil(lambda: hub.results.count() == 1, timeout=10000)
    assert "gated" not in hub.results.item(0).text()
    hub.results.setCurrentRow(0)
    qtbot.waitUntil(lambda: hub.files.topLevelItemCount() == 1, timeout=10000)
    dl = h.tab.downloads
    shown = []

    def refuse():
        box = QApplication.activeModalWidget()
        shown.append(box.text())
        box.reject()

    QTimer.singleShot(0, refuse)
    hub.select_file("l-Q4_K_M.gguf")
    hub.download_btn.click()
    assert shown and "llama3.2" in shown[0] and "restrictive" in shown[0] and "gated" not in shown[0]
    assert "not accepted" in dl.message.text()
    assert dl.queue is None or not dl.queue.jobs()
    finished = []
    dl.job_finished.connect(finished.append)
    click_in_dialog("accept_button")
    hub.download_btn.click()
    qtbot.waitUntil(lambda: bool(finished), timeout=15000)
    assert finished[0].state == "done", finished[0].message
    assert finished[0].accept_license is True
    rec = Library().get("someuser/Llama-3.2-1B-Instruct-GGUF/l-Q4_K_M.gguf")
    assert rec is not None and rec.license == "llama3.2"
