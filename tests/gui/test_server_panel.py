"""File › Local server (issue 15): the OpenAI API served from the running app, on the Chat tab's
own model thread and model (no second copy), with a live request count; stopped at quit."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from desktop_app.core.starter import STARTER_ID
from desktop_app.ui.main_window import MainWindow

pytestmark = [pytest.mark.gui, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_app_serves_its_chat_model(qtbot, starter_model):
    from openai import OpenAI

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.start()
    chat = win.chat_tab
    chat.params.max_tokens.setValue(8)
    with qtbot.waitSignal(chat.reply_finished, timeout=120_000):
        chat.send("Hello")
    pid = win.ctx.loaded_slots()["chat"][1]
    panel = win.show_server()
    port = free_port()
    with qtbot.waitSignal(panel.state_changed, timeout=60_000) as st:
        panel.start("127.0.0.1", port, "")
    assert st.args == [True] and panel.serving and panel.toggle_button.text() == "Stop"
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=120)
    try:
        assert STARTER_ID in [m.id for m in client.models.list()]
        out = {}

        def ask():
            out["r"] = client.chat.completions.create(model=STARTER_ID, max_tokens=6, temperature=0.0,
                                                     messages=[{"role": "user", "content": "Say hi."}])

        import threading

        t = threading.Thread(target=ask)
        t.start()
        qtbot.waitUntil(lambda: not t.is_alive(), timeout=120_000)  # the GUI thread keeps running meanwhile
        assert out["r"].choices[0].message.content
        # the Chat tab's engine answered it: the same child process, nothing loaded twice
        assert win.ctx.loaded_slots()["chat"][1] == pid and panel.worker.served == 1
        qtbot.waitUntil(lambda: "1 request(s) answered" in panel.status.text(), timeout=5_000)
        SHOTS.mkdir(exist_ok=True)
        panel.grab().save(str(SHOTS / "server_panel.png"))
    finally:
        client.close()
    with qtbot.waitSignal(panel.state_changed, timeout=30_000) as st:
        panel.stop()
    assert st.args == [False] and not panel.serving
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    win.close()
