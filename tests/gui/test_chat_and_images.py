"""Chat × images (issue 14) in the real window, with the real starter model and a tiny SD 1.5
pipeline in their engine processes: Enhance prompt in the Studio (streamed, one undo step, the
idea kept in the PNG), /imagine and "Imagine this" in the chat (inline, stored, exported, opened
in the Studio, never sent to the language model), both models loaded at once, and the memory
meter in the status bar."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop_app.core.library import ModelRecord
from desktop_app.ui.main_window import MainWindow

pytestmark = [pytest.mark.gui, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"
TIMEOUT = 180_000


@pytest.fixture
def window(qtbot, starter_model, tmp_path_factory):
    from tests.diffusion import tiny_pipelines as tp

    folder = tp.build_sd15(tmp_path_factory.mktemp("ci_tiny") / "tiny-sd15")
    win = MainWindow()
    win.ctx.library.add(ModelRecord(id="tiny-sd15", task="image", format="diffusers", path=str(folder),
                                    size_bytes=1000, name="Tiny SD 1.5", family="sd15"))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    win.start()
    studio = win.studio_tab
    qtbot.waitUntil(lambda: studio.current_model_id() == "tiny-sd15", timeout=30_000)
    studio.params.steps.setValue(2)
    studio.params.width_box.setValue(64)
    studio.params.height_box.setValue(64)
    chat = win.chat_tab
    chat.params.max_tokens.setValue(12)
    chat.params.temperature.setValue(0.0)
    chat.params.seed.setValue(1)
    yield win
    win.close()


def shot(widget, name):
    SHOTS.mkdir(exist_ok=True)
    assert widget.grab().save(str(SHOTS / name))


def test_enhance_prompt_streams_undoes_in_one_step_and_keeps_the_idea(window, qtbot):
    from desktop_app.engines.diffusion.metadata import parse_parameters

    studio = window.studio_tab
    window.tabs.setCurrentIndex(1)
    box = studio.params.prompt
    box.setPlainText("a lighthouse in a storm")
    enh = studio.enhancer
    updates = []
    box.textChanged.connect(lambda: updates.append(box.toPlainText()))
    with qtbot.waitSignal(enh.finished, timeout=TIMEOUT) as done:
        qtbot.mouseClick(enh.button, Qt.MouseButton.LeftButton)
        assert box.isReadOnly() and enh.button.text() == "Stop"
    assert done.args == ["done"] and not box.isReadOnly() and enh.button.text() == "Enhance"
    enhanced = box.toPlainText()
    assert enhanced and enhanced != "a lighthouse in a storm" and len(updates) >= 1
    shot(window, "studio_enhanced_prompt.png")
    # the loaded chat model did it: the starter was loaded in the chat thread, and shows as loaded
    assert "chat" in window.ctx.loaded_slots() and "SmolLM2" in window.loaded_label.text()

    # the enhanced prompt generates; its PNG keeps the idea
    with qtbot.waitSignal(studio.generation_finished, timeout=TIMEOUT) as gen:
        studio.generate()
    assert gen.args == ["done"]
    newest = studio.gallery_model.item(0).path
    params = parse_parameters(newest)
    assert params["prompt"] == enhanced and params["idea"] == "a lighthouse in a storm"
    # both models were loaded at once, through the broker
    assert set(window.ctx.broker.slots()) == {"chat", "image"}

    # one undo brings the idea back (however many updates streamed in)
    box.undo()
    assert box.toPlainText() == "a lighthouse in a storm"
    assert enh.idea_for(box.toPlainText()) == ""  # an idea is not its own enhancement


def test_imagine_from_chat_inline_stored_exported_and_opened_in_the_studio(window, qtbot, tmp_path):
    from desktop_app.core.history_export import export_markdown

    chat, studio = window.chat_tab, window.studio_tab
    window.tabs.setCurrentIndex(0)
    n0 = studio.gallery_model.rowCount()
    with qtbot.waitSignal(studio.generation_finished, timeout=TIMEOUT):
        qtbot.keyClicks(chat.input, "/imagine a red fox in the snow")
        qtbot.keyClick(chat.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: any(m.image for m in chat.view.messages()), timeout=10_000)
    msgs = chat.view.messages()
    assert [m.role for m in msgs] == ["user", "assistant"] and msgs[0].params == {"command": "imagine"}
    img = msgs[1].image
    assert img["prompt"] == "a red fox in the snow" and Path(img["path"]).is_file()
    assert studio.gallery_model.rowCount() == n0 + 1  # it is in the gallery too, with full metadata
    w = chat.view.widget_for(msgs[1].id)
    assert w.image_button is not None and not w.image_button.icon().isNull()
    qtbot.waitUntil(lambda: w.image_button.isVisible() and w.height() > 64, timeout=5_000)
    qtbot.wait(300)  # laid out and painted
    shot(window, "chat_inline_image.png")

    # a normal message afterwards: the image and the command are not sent to the language model
    sent = []
    orig = chat.controller.start_reply
    chat.controller.start_reply = lambda *a, **k: (sent.append(a[2]), orig(*a, **k))[1]
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT):
        chat.send("Describe a fox.")
    assert [m["content"] for m in sent[0] if m["role"] != "system"] == ["Describe a fox."]

    # "Imagine this" on the reply
    reply = chat.view.messages()[-1]
    with qtbot.waitSignal(studio.generation_finished, timeout=TIMEOUT):
        chat.view.widget_for(reply.id).buttons["imagine_this"].click()
    qtbot.waitUntil(lambda: sum(1 for m in chat.view.messages() if m.image) == 2, timeout=10_000)

    # stored with the conversation: it survives reopening, and the export links the image
    cid = chat.conversation_id
    chat.open_conversation(cid)  # read back from the history database
    qtbot.waitUntil(lambda: sum(1 for m in chat.view.messages() if m.image) == 2, timeout=10_000)
    stored = [m for m in chat.store.messages(cid) if (m.params or {}).get("image")]
    assert len(stored) == 2
    md = export_markdown(chat.store, cid)
    assert f"![a red fox in the snow](<{img['path']}>)" in md

    # a click on the inline image opens it in the Studio with its parameters
    studio.params.prompt.setPlainText("something else")
    w = chat.view.widget_for(msgs[1].id)
    with qtbot.waitSignal(studio.params_restored, timeout=10_000):
        w.image_button.click()
    qtbot.waitUntil(lambda: studio.params.prompt.toPlainText() == "a red fox in the snow", timeout=10_000)
    assert window.tabs.currentIndex() == 1


def test_memory_meter_in_the_status_bar(window, qtbot):
    meter = window.memory_meter
    with qtbot.waitSignal(window.chat_tab.reply_finished, timeout=TIMEOUT):
        window.chat_tab.send("Hello")
    qtbot.waitUntil(lambda: "Chat " in meter.text(), timeout=10_000)
    assert "RAM" in meter.text()
    shot(window.statusBar(), "status_memory_meter.png")
