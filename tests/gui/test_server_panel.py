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


def test_the_app_serves_images_on_the_studios_engine(qtbot, starter_model, tmp_path_factory):
    """/v1/images/generations from the running app: the Image Studio's engine process makes it (no
    second engine), the memory meter's slot says what is loaded, and the PNG carries its parameters."""
    import base64
    import io

    from openai import OpenAI
    from PIL import Image

    from desktop_app.core.library import ModelRecord
    from tests.diffusion import tiny_pipelines as tp

    folder = tp.build_sd15(tmp_path_factory.mktemp("srv_tiny") / "tiny-sd15")
    own = tp.build_sd15(tmp_path_factory.mktemp("srv_own") / "own-sd15")
    win = MainWindow()
    win.ctx.library.add(ModelRecord(id="tiny-sd15", task="image", format="diffusers", path=str(folder),
                                    size_bytes=1000, name="Tiny SD 1.5", family="sd15"))
    win.ctx.library.add(ModelRecord(id="own-sd15", task="image", format="diffusers", path=str(own),
                                    size_bytes=1000, name="Own SD 1.5", family="sd15"))
    qtbot.addWidget(win)
    win.show()
    win.start()
    studio = win.studio_tab
    qtbot.waitUntil(lambda: "own-sd15" in studio._model_ids, timeout=20_000)
    with qtbot.waitSignal(studio.controller.load_ended, timeout=60_000):
        studio.select_model("own-sd15")  # the Studio's own model first: the server's request takes the engine
    assert str(studio.controller.loaded_path) == str(own)
    panel = win.show_server()
    port = free_port()
    with qtbot.waitSignal(panel.state_changed, timeout=60_000):
        panel.start("127.0.0.1", port, "")
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=180)
    try:
        listed = {m.id: getattr(m, "task", None) for m in client.models.list()}
        assert listed.get("tiny-sd15") == "image" and listed.get(STARTER_ID) == "chat"
        out = {}

        def ask():
            try:
                out["r"] = client.images.generate(model="tiny-sd15", prompt="a red square", size="64x64", n=2,
                                                  response_format="b64_json",
                                                  extra_body={"seed": 7, "steps": 2, "negative_prompt": "blue"})
            except Exception as exc:  # noqa: BLE001 - shown by the assert below
                out["e"] = exc

        import threading

        t = threading.Thread(target=ask)
        t.start()
        qtbot.waitUntil(lambda: not t.is_alive(), timeout=180_000)
        assert "e" not in out, out.get("e")
        imgs = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in out["r"].data]
        assert [im.size for im in imgs] == [(64, 64), (64, 64)]
        params = imgs[0].info.get("parameters", "")
        assert "a red square" in params and "Negative prompt: blue" in params and "Steps: 2" in params
        assert "Seed: 7" in params and "Seed: 8" in imgs[1].info.get("parameters", "")
        assert panel.images.served == 1 and panel.images.pending == 0
        assert "Tiny SD 1.5" in win.ctx.loaded_slots()["image"][0]
        # the Studio's own thread made it: the image slot's engine process is the Studio thread's
        engine = win.ctx.model_thread("image")._worker.state["engine"]
        assert win.ctx.loaded_slots()["image"][1] == engine.pid
        # the Studio's footer and its idea of what is loaded follow; its next Generate takes its own back
        qtbot.waitUntil(lambda: "local server loaded Tiny SD 1.5" in studio.status_label.text(), timeout=10_000)
        assert str(studio.controller.loaded_path) == str(folder)
        studio.params.prompt.setPlainText("a blue circle")
        studio.params.steps.setValue(2)
        studio.params.width_box.setValue(64)
        studio.params.height_box.setValue(64)
        with qtbot.waitSignal(studio.generation_finished, timeout=120_000) as gen:
            studio.generate()
        assert gen.args == ["done"] and str(studio.controller.loaded_path) == str(own)
        assert "Own SD 1.5" in win.ctx.loaded_slots()["image"][0]
    finally:
        client.close()
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/images/generations", method="POST",
                                 data=json.dumps({"prompt": "x", "steps": 0}).encode(),
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as bad:  # a bad field is OpenAI's 400, not a crash
        urllib.request.urlopen(req, timeout=30)
    assert bad.value.code == 400 and "steps" in json.loads(bad.value.read())["error"]["message"]
    with qtbot.waitSignal(panel.state_changed, timeout=30_000):
        panel.stop()
    win.close()
