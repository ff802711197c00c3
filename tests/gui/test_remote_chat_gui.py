"""Issue 15, remote engines in the app: Models › Servers › Add a server (llama-cpp-python's own
server, started here on loopback with the starter model); its model in the chat picker with a
"remote" badge; a reply streams from it into the history with its stats; the server killed: the
next message is a clear error with a Retry button, not a hang; the server back: Retry loads it and
the chat goes on; the offline switch blocks a server outside this computer and says so."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel

from tests.e2e.test_remote_engine import ALIAS, free_port, start_llama_server

pytestmark = [pytest.mark.gui, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"
TIMEOUT = 120_000


@pytest.fixture
def window(qtbot, starter_model):
    from desktop_app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    win.start()
    yield win
    win.close()


def _picker_ids(chat) -> list[str]:
    combo = chat.header.model_combo
    return [combo.itemData(i) for i in range(combo.count())]


def test_add_a_server_chat_on_its_model_lose_it_and_retry(window, qtbot, starter_model, tmp_path):
    port = free_port()
    proc = start_llama_server(starter_model, port, tmp_path / "llama_server.log")
    try:
        models = window.models_tab
        view = models.servers
        models.sections.setCurrentWidget(view)
        window.tabs.setCurrentIndex(2)
        with qtbot.waitSignal(window.ctx.remotes_changed, timeout=30_000):
            view.add("team box", f"http://127.0.0.1:{port}")
        qtbot.waitUntil(lambda: view.tree.topLevelItemCount() == 1 and view.tree.topLevelItem(0).childCount() == 1,
                        timeout=10_000)
        top = view.tree.topLevelItem(0)
        assert top.text(0) == "team box" and top.text(2) == "1 model(s)"
        assert top.child(0).text(0) == ALIAS and "remote" in top.child(0).text(1)
        qtbot.waitUntil(lambda: "1 model(s) listed" in view.status.text(), timeout=5_000)
        qtbot.wait(100)
        SHOTS.mkdir(exist_ok=True)
        window.grab().save(str(SHOTS / "models_servers.png"))

        chat = window.chat_tab
        rid = f"remote:team box/{ALIAS}"
        qtbot.waitUntil(lambda: rid in _picker_ids(chat), timeout=10_000)
        combo = chat.header.model_combo
        label = combo.itemText(combo.findData(rid))
        assert label.startswith(ALIAS) and "remote · team box" in label
        window.tabs.setCurrentIndex(0)
        chat.header.select_model(rid)
        chat.params.max_tokens.setValue(12)
        chat.params.temperature.setValue(0.0)
        with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT) as done:
            chat.send("Name a colour.")
        assert done.args[0]["finish_reason"] in ("stop", "length") and done.args[0]["tokens"] > 0
        msgs = chat.store.messages(chat.conversation_id)
        assert [m.role for m in msgs] == ["user", "assistant"] and msgs[1].content.strip()
        assert msgs[1].model_id == rid
        assert "team box" in window.loaded_label.text()
        bubble = [w for w in chat.view.findChildren(QLabel, "chatMessageStats") if w.text()][-1]
        assert "tok/s" in bubble.text() and "12 tokens" in bubble.text()  # the same stats as a local reply
        qtbot.wait(200)
        window.grab().save(str(SHOTS / "chat_remote_model.png"))

        # Stop works as with a local model: the reply so far is kept, marked stopped
        chat.params.max_tokens.setValue(400)
        with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT) as stopped:
            with qtbot.waitSignal(chat.controller.reply_delta, timeout=TIMEOUT):
                chat.send("Tell a long story about the sea.")
            chat.stop()
        assert stopped.args[0]["finish_reason"] == "cancelled"
        kept = chat.store.messages(chat.conversation_id)[-1]
        assert kept.role == "assistant" and kept.content and kept.stats.get("finish_reason") == "cancelled"
        chat.params.max_tokens.setValue(12)

        # the server goes away: the next message fails at once with a clear error and a Retry
        proc.terminate()
        proc.wait(timeout=30)
        t0 = time.monotonic()
        with qtbot.waitSignal(chat.reply_finished, timeout=30_000):
            chat.send("And another?")
        assert time.monotonic() - t0 < 15  # the connect timeout, not a hang
        notice = chat.notices.notice.text()
        assert "Cannot reach the server team box" in notice, notice
        assert chat.notices.retry_button.isVisible()

        # the server is back: Retry loads its model again, and the chat goes on
        proc = start_llama_server(starter_model, port, tmp_path / "llama_server.log")
        with qtbot.waitSignal(chat.controller.loaded, timeout=30_000):
            chat.notices.retry_button.click()
        assert chat.controller.loaded_model == rid and not chat.notices.retry_button.isVisible()
        with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT) as done:
            chat.send("One more colour.")
        assert done.args[0]["finish_reason"] in ("stop", "length")
        assert chat.store.messages(chat.conversation_id)[-1].content.strip()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def test_offline_blocks_a_server_outside_this_computer(window, qtbot):
    from desktop_app.core.remotes import _write_cache, add_server

    add_server("far", "http://192.0.2.10:8000/v1", settings=window.ctx.settings)  # TEST-NET: never reached
    _write_cache({"far": {"chat": ["big-model"], "image": [], "error": None, "checked": 1.0}})
    window.ctx.settings.set("offline", True)
    view = window.models_tab.servers
    with qtbot.waitSignal(view.changed, timeout=10_000):
        view.show_list()
    assert view.tree.topLevelItem(0).text(2).startswith("blocked: offline mode is on")
    chat = window.chat_tab
    rid = "remote:far/big-model"
    with qtbot.waitSignal(chat.header.model_combo.model().modelReset, timeout=10_000, raising=False):
        window.ctx.remotes_changed.emit()
    qtbot.waitUntil(lambda: rid in _picker_ids(chat), timeout=10_000)
    combo = chat.header.model_combo
    assert "blocked while offline" in combo.itemText(combo.findData(rid))
    chat.header.select_model(rid)
    t0 = time.monotonic()
    with qtbot.waitSignal(chat.reply_finished, timeout=30_000):
        chat.send("Hello?")
    assert time.monotonic() - t0 < 5
    notice = chat.notices.notice.text()
    assert "Offline mode is on" in notice and "far" in notice, notice


@pytest.fixture
def image_server(tmp_path_factory):
    """Another Atelier (its own home) running `atelier serve` with a tiny SD 1.5 pipeline and a key."""
    import os
    import subprocess
    import sys
    import urllib.request

    root = Path(__file__).resolve().parents[2]
    home = tmp_path_factory.mktemp("gpu_box_home")
    env = {**os.environ, "ATELIER_HOME": str(home)}
    from tests.diffusion import tiny_pipelines as tp

    folder = tp.build_sd15(tmp_path_factory.mktemp("gpu_box_tiny") / "tiny-sd15")
    r = subprocess.run([sys.executable, "-m", "desktop_app", "models", "import", str(folder), "--json"], cwd=root,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    port = free_port()
    with open(home / "serve.log", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "desktop_app", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), "--api-key", "box-key"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
    end = time.monotonic() + 60
    while True:
        try:
            rq = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer box-key"})
            urllib.request.urlopen(rq, timeout=2).close()
            break
        except OSError:
            if time.monotonic() > end or proc.poll() is not None:
                proc.kill()
                pytest.fail("atelier serve did not start: " + (home / "serve.log").read_text()[-2000:])
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(timeout=30)


def test_the_studio_makes_images_on_another_ateliers_server(window, qtbot, image_server):
    from desktop_app.engines.diffusion.metadata import parse_parameters

    view = window.models_tab.servers
    with qtbot.waitSignal(window.ctx.remotes_changed, timeout=30_000):
        view.add("gpu-box", f"http://127.0.0.1:{image_server}/v1", "box-key")
    qtbot.waitUntil(lambda: view.tree.topLevelItemCount() == 1 and view.tree.topLevelItem(0).childCount() == 2,
                    timeout=10_000)
    kinds = sorted(view.tree.topLevelItem(0).child(i).text(1) for i in range(2))
    assert kinds == ["chat · remote", "image · remote"]
    window.tabs.setCurrentIndex(1)
    studio = window.studio_tab
    qtbot.waitUntil(lambda: any(m.startswith("remote:gpu-box/") for m in studio._model_ids), timeout=10_000)
    rid = next(m for m in studio._model_ids if m.startswith("remote:gpu-box/"))
    assert "remote · gpu-box" in studio.model_combo.itemText(studio._model_ids.index(rid))
    with qtbot.waitSignal(studio.controller.load_ended, timeout=30_000) as loaded:
        studio.select_model(rid)
    assert loaded.args == ["done"] and "gpu-box" in window.loaded_label.text()
    studio.params.prompt.setPlainText("a lighthouse")
    studio.params.negative.setPlainText("fog")
    studio.params.steps.setValue(2)
    studio.params.width_box.setValue(64)
    studio.params.height_box.setValue(64)
    studio.params.batch.setValue(2)
    with qtbot.waitSignal(studio.generation_finished, timeout=120_000) as gen:
        studio.generate()
    assert gen.args == ["done"]
    paths = [studio.gallery_model.item(i).path for i in range(2)]
    params = [parse_parameters(p) for p in paths]
    assert all(x["prompt"] == "a lighthouse" and x["negative"] == "fog" and int(x["steps"]) == 2 for x in params)
    assert {int(x["seed"]) for x in params} and params[0]["seed"] != params[1]["seed"]
    SHOTS.mkdir(exist_ok=True)
    qtbot.wait(100)
    window.grab().save(str(SHOTS / "studio_remote_server.png"))
