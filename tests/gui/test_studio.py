"""The Image Studio tab with a real engine child process and tiny random diffusers pipelines.

Fast tests (no engine): mask painting + undo, gallery actions, drop a PNG, size validation.
Slow tests (real engine, torch import in the child ~5 s): one engine is shared by the module
where the test allows it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage

from desktop_app.core.library import ModelRecord
from desktop_app.qt.context import AppContext
from desktop_app.qt.threads import running_qthreads
from desktop_app.ui.studio.gallery import images_dir, trash_dir
from desktop_app.ui.studio.tab import StudioTab

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


def shot(widget, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    assert widget.grab().save(str(SHOTS / f"studio_{name}.png"))


def png_bytes(size=(96, 64), color=(40, 120, 200), params: dict | None = None, a1111: str | None = None) -> bytes:
    from PIL import Image, PngImagePlugin

    img = Image.new("RGB", size, color)
    if params is not None:
        from desktop_app.engines.diffusion.metadata import png_with_metadata

        return png_with_metadata(img, params)
    buf = io.BytesIO()
    info = None
    if a1111 is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", a1111)
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


PARAMS = {"prompt": "a lighthouse at dusk", "negative": "blurry", "mode": "txt2img", "steps": 7, "guidance": 4.5,
          "width": 96, "height": 64, "seed": 1234, "scheduler": "DDIM", "model": "tiny", "loras": []}


@pytest.fixture
def studio(qtbot):
    """A StudioTab on its own AppContext (no window); threads joined at teardown."""
    ctx = AppContext()
    tab = StudioTab(ctx)
    qtbot.addWidget(tab)
    tab.resize(1200, 800)
    tab.show()
    qtbot.waitExposed(tab)
    yield tab
    tab.shutdown()
    ctx.shutdown()
    assert not running_qthreads()


def drop_file(tab, path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    ev = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    # QApplication.sendEvent ignores a drop without a drag in progress: deliver it to the widget.
    import warnings

    with warnings.catch_warnings():  # PySide6 marks the only QDragEnterEvent constructor deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    tab.event(enter)
    assert enter.isAccepted()
    tab.event(ev)
    assert ev.isAccepted()


# ---------------------------------------------------------------------------------- fast tests

def test_mask_painting_makes_a_mask_and_undo_restores_it(studio, qtbot):
    img = QImage(256, 256, QImage.Format.Format_RGB32)
    img.fill(Qt.GlobalColor.darkGreen)
    studio.params.set_mode("inpaint")
    studio.set_init_image(img)
    canvas = studio.canvas
    assert studio.view_tabs.currentIndex() == 1 and canvas.has_image()
    assert canvas.is_mask_empty()
    studio.canvas_page.brush_slider.setValue(40)
    assert canvas.brush_size() == 40
    a = canvas.image_to_widget(QPointF(60, 60)).toPoint()
    b = canvas.image_to_widget(QPointF(190, 120)).toPoint()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=a)
    for i in range(1, 11):
        qtbot.mouseMove(canvas, a + (b - a) * (i / 10))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=b)
    cov = canvas.mask_coverage()
    assert 0.01 < cov < 0.6, cov
    mask = QImage.fromData(canvas.mask_png())
    assert mask.size() == img.size() and mask.pixelColor(60, 60).red() == 255 and mask.pixelColor(5, 250).red() == 0
    shot(studio, "inpaint_canvas")
    # erase part of it with the right button, then undo twice: empty again (Ctrl+Z on the canvas)
    qtbot.mousePress(canvas, Qt.MouseButton.RightButton, pos=a)
    qtbot.mouseRelease(canvas, Qt.MouseButton.RightButton, pos=a)
    assert canvas.mask_coverage() < cov
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert canvas.mask_coverage() == pytest.approx(cov)
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert canvas.is_mask_empty()
    # clear is undoable too
    canvas.set_mask(QImage.fromData(png_bytes((256, 256), (255, 255, 255))))
    assert canvas.mask_coverage() == 1.0
    studio.canvas_page.clear_button.click()
    assert canvas.is_mask_empty()
    studio.canvas_page.undo_button.click()
    assert canvas.mask_coverage() == 1.0


def test_the_inpaint_brush_is_sized_in_screen_pixels(studio, qtbot):
    img = QImage(1024, 1024, QImage.Format.Format_RGB32)
    img.fill(Qt.GlobalColor.darkBlue)
    studio.params.set_mode("inpaint")
    studio.set_init_image(img)
    canvas = studio.canvas
    studio.canvas_page.brush_slider.setValue(40)
    qtbot.wait(20)
    scale = canvas._scale()
    assert scale < 1  # a large image shown smaller
    assert canvas.brush_in_image() == pytest.approx(40 / scale)
    centre = canvas.image_to_widget(QPointF(512, 512)).toPoint()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=centre)
    mask = QImage.fromData(canvas.mask_png())
    painted = [x for x in range(1024) if mask.pixelColor(x, 512).red() > 127]
    assert abs(len(painted) - 40 / scale) <= 3  # a 40-pixel dab on screen, whatever the image size
    canvas.resize(canvas.width() // 2, canvas.height() // 2)  # zoomed out further: the same dab on screen
    qtbot.wait(20)
    assert canvas.brush_size() == 40 and canvas.brush_in_image() == pytest.approx(40 / canvas._scale())
    assert canvas.brush_in_image() > 40 / scale


def test_inpaint_without_mask_and_invalid_size_show_clear_errors(studio, qtbot):
    studio.params.width_box.setValue(500)
    assert studio.params.size_error.isVisible() and "multiple of 8" in studio.params.size_error.text()
    assert studio.generate() is None
    assert studio.banner.isVisible()
    text = studio.banner_label.text()
    assert "Width 500 px is not valid" in text and "image model" in text
    studio.params.width_box.setValue(512)
    studio.params.height_box.setValue(40)
    assert "Height 40 px" in studio.params.size_error.text()
    studio.params.height_box.setValue(512)
    assert not studio.params.size_error.isVisible()
    studio.params.set_max_size(256)
    assert "maximum (256 px)" in studio.params.size_error.text()
    studio.params.set_mode("inpaint")
    studio.generate()
    assert "needs an init image" in studio.banner_label.text()
    shot(studio, "invalid_size")


def test_gallery_lazy_thumbnails_and_actions(studio, qtbot):
    d = images_dir()
    for i in range(3):
        (d / f"2026010{i}-img.png").write_bytes(png_bytes(color=(60 * i, 90, 150), params=dict(PARAMS, seed=100 + i)))
        os.utime(d / f"2026010{i}-img.png", (1_700_000_000 + i, 1_700_000_000 + i))
    model = studio.gallery_model
    studio.refresh_gallery()
    qtbot.waitUntil(lambda: model.rowCount() == 3, timeout=5000)
    assert model.item(0).path.name == "20260102-img.png"  # newest first
    qtbot.waitUntil(lambda: all(it.loaded for it in model.items()), timeout=5000)
    assert model.requested_total >= 3 and model.item(0).thumb.width() == 128
    assert model.item(0).params["seed"] == 102

    # reuse parameters
    studio.gallery.setCurrentIndex(model.index(1))
    assert studio.gallery_panel.act_reuse.isEnabled()
    studio.gallery_panel.act_reuse.trigger()
    p = studio.params.get_params()
    assert p["prompt"] == "a lighthouse at dusk" and p["negative"] == "blurry" and p["seed"] == 101
    assert p["steps"] == 7 and p["guidance"] == 4.5 and p["scheduler"] == "DDIM" and (p["width"], p["height"]) == (96, 64)

    # send to image-to-image / inpaint
    studio.gallery_panel.act_img2img.trigger()
    assert studio.params.mode() == "img2img" and studio.canvas.has_image()
    assert studio.canvas.image().size().width() == 96 and studio.view_tabs.currentIndex() == 1
    studio.gallery_panel.act_inpaint.trigger()
    assert studio.params.mode() == "inpaint" and studio.canvas.mask_enabled

    # save as keeps the metadata; copy puts the image on the clipboard
    from desktop_app.engines.diffusion.metadata import parse_parameters

    dest = images_dir().parent / "copy.png"
    studio.gallery_panel.save_as(model.item(1).path, dest)
    assert parse_parameters(dest)["seed"] == 101
    studio.gallery_panel.act_copy.trigger()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().image().width() == 96

    # open large
    dlg = studio.gallery_panel.open_large(model.item(1).path)
    qtbot.waitExposed(dlg)
    assert "a lighthouse at dusk" in dlg.findChildren(type(studio.status_label))[0].text()
    dlg.close()

    # post-processing without models installed: disabled, tooltip says what to do
    assert not studio.gallery_panel.act_upscale.isEnabled() and "install" in studio.gallery_panel.act_upscale.toolTip()
    assert not studio.gallery_panel.act_removebg.isEnabled()
    shot(studio, "gallery")

    # delete: to the gallery's trash, no question asked, and Undo (Ctrl+Z) brings it back
    path, params = model.item(0).path, model.item(0).params
    from PySide6.QtGui import QKeySequence

    gp = studio.gallery_panel
    assert gp.act_delete.shortcut() == QKeySequence(QKeySequence.StandardKey.Delete)
    assert gp.act_undo.shortcut() == QKeySequence(QKeySequence.StandardKey.Undo)
    gp.select_row(0)
    assert studio.gallery.selected_rows() == [0]
    gp.act_delete.trigger()  # Delete
    assert not path.exists() and model.rowCount() == 2
    assert "Undo delete" in studio.status_label.text() and gp.act_undo.isEnabled()
    gp.act_undo.trigger()  # Ctrl+Z
    assert path.exists() and model.rowCount() == 3 and model.item(0).path == path and model.item(0).params == params
    assert "Restored 1 image" in studio.status_label.text() and not studio.gallery_panel.act_undo.isEnabled()
    studio.gallery_panel.delete_rows([0])
    assert not path.exists() and any(trash_dir().rglob(path.name))
    studio.gallery_panel.purge_trash()  # what closing Atelier does
    assert not trash_dir().exists() and model.rowCount() == 2


def test_the_preview_shows_the_clicked_image_and_forgets_a_deleted_one(studio, qtbot):
    d = images_dir()
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for i, c in enumerate(colors):
        (d / f"2026020{i}-img.png").write_bytes(png_bytes(size=(80 + 8 * i, 64), color=c, params=dict(PARAMS, seed=i)))
        os.utime(d / f"2026020{i}-img.png", (1_700_000_000 + i, 1_700_000_000 + i))
    model = studio.gallery_model
    studio.refresh_gallery()
    qtbot.waitUntil(lambda: model.rowCount() == 3, timeout=5000)
    studio.view_tabs.setCurrentWidget(studio.canvas_page)
    for row in (2, 0, 1):
        qtbot.waitUntil(lambda: studio.gallery.visualRect(model.index(row)).isValid(), timeout=5000)
        rect = studio.gallery.visualRect(model.index(row))
        qtbot.mouseClick(studio.gallery.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        it = model.item(row)
        qtbot.waitUntil(lambda: studio.gallery.selected_rows() == [row], timeout=5000)
        qtbot.waitUntil(lambda: studio.follower.path == it.path, timeout=10000)
        shown = studio.preview.image()
        want = QImage(str(it.path))
        assert shown.size() == want.size() and shown.pixelColor(5, 5) == want.pixelColor(5, 5)
        assert studio.gallery_panel.selected_item() is it  # what the toolbar acts on is what is shown
        assert f"seed {2 - row}" in studio.preview.caption  # newest first: row 0 is the file with seed 2
    assert studio.view_tabs.currentWidget() is studio.preview  # a picked image comes to the front
    shot(studio, "preview_follows_selection")
    # deleting the shown image clears it from the preview
    studio.gallery_panel.delete_rows([1])
    assert studio.preview.image().isNull() and studio.follower.path is None and model.rowCount() == 2


def test_selected_thumbnails_keep_their_colours(studio, qtbot):
    from PySide6.QtGui import QIcon

    (images_dir() / "20260301-img.png").write_bytes(png_bytes(size=(128, 128), color=(250, 200, 20)))
    model = studio.gallery_model
    studio.refresh_gallery()
    qtbot.waitUntil(lambda: model.rowCount() == 1 and model.item(0).loaded, timeout=5000)
    icon = model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    assert isinstance(icon, QIcon)
    normal = icon.pixmap(128, 128, QIcon.Mode.Normal).toImage()
    selected = icon.pixmap(128, 128, QIcon.Mode.Selected).toImage()
    assert selected == normal  # Qt would tint it with the highlight colour otherwise
    studio.gallery_panel.select_row(0)
    img = studio.gallery.viewport().grab().toImage()
    rect = studio.gallery.visualRect(model.index(0))
    px = img.pixelColor(rect.center().x(), rect.top() + 30)
    assert (px.red(), px.green(), px.blue()) == (250, 200, 20)


def test_the_footer_follows_the_library_and_sizes_follow_the_model(qtbot, tmp_path):
    from desktop_app.ui.studio.tab import NO_MODELS

    ctx = AppContext()
    tab = StudioTab(ctx)
    qtbot.addWidget(tab)
    with qtbot.waitSignal(tab.models_listed, timeout=10000):
        tab.start()
    assert tab.status_label.text() == NO_MODELS
    folder = tmp_path / "xl"
    folder.mkdir()
    xl = ModelRecord(id="some-xl", task="image", format="diffusers", path=str(folder), size_bytes=1000,
                     name="Some XL", family="sdxl")
    ctx.library.add(xl)
    with qtbot.waitSignal(tab.models_listed, timeout=10000):
        ctx.library_changed.emit()  # an import in the Models tab: no restart
    assert tab.current_model_id() == "some-xl" and "No image model" not in tab.status_label.text()
    p = tab.params.get_params()
    assert (p["width"], p["height"]) == (1024, 1024)  # SDXL's native size, before any load
    tab.params.width_box.setValue(832)
    tab.params.height_box.setValue(1216)
    tab.params.steps.setValue(14)
    tab.controller.remember_params(xl, tab.params.get_params())  # what a generation does
    tab.shutdown()
    ctx.shutdown()

    ctx2 = AppContext()  # a restart: the same settings file
    tab2 = StudioTab(ctx2)
    qtbot.addWidget(tab2)
    with qtbot.waitSignal(tab2.models_listed, timeout=10000):
        tab2.start()
    p = tab2.params.get_params()
    assert (p["width"], p["height"], p["steps"]) == (832, 1216, 14)
    # aspect presets keep the model's trained pixel count (SDXL: 1024²); styles ride along
    tab2.params.aspect.setCurrentIndex(tab2.params.aspect.findText("16:9 wide"))
    tab2.params.aspect.activated.emit(tab2.params.aspect.currentIndex())
    p = tab2.params.get_params()
    assert (p["width"], p["height"]) == (1344, 768) and tab2.params.aspect.currentText() == "16:9 wide"
    tab2.params.width_box.setValue(1280)  # typed by hand: the preset no longer holds
    assert tab2.params.aspect.currentText() == "Custom"
    tab2.params.style_combo.setCurrentText("Cinematic")
    assert tab2.params.get_params()["style"] == "Cinematic"
    tab2.shutdown()
    ctx2.shutdown()
    assert not running_qthreads()


def test_lora_files_are_checked_when_added(studio, qtbot, tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    lora = tmp_path / "style-lora.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": np.zeros((4, 8), np.float16),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": np.zeros((8, 4), np.float16)}, str(lora))
    ckpt = tmp_path / "v1-5-pruned.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": np.zeros((4, 4), np.float16)}, str(ckpt))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    studio.params.add_lora_files([str(ckpt)])
    qtbot.waitUntil(lambda: studio.last_error is not None, timeout=5000)
    assert "v1-5-pruned.safetensors is not a LoRA adapter" in studio.last_error[1]
    assert "image model checkpoint" in studio.last_error[1] and "\n" not in studio.last_error[1]
    studio.last_error = None
    studio.params.add_lora_files([str(broken)])
    qtbot.waitUntil(lambda: studio.last_error is not None, timeout=5000)
    assert "broken.safetensors is not a valid safetensors file" in studio.last_error[1]
    studio.params.add_lora_files([str(lora)])
    qtbot.waitUntil(lambda: studio.params.lora_table.rowCount() == 1, timeout=5000)
    assert studio.params.loras() == [{"path": str(lora), "weight": 1.0}]


def test_reusing_a_private_image_finds_its_model_by_name(studio, qtbot, tmp_path):
    """Saved PNGs keep names and hashes, not paths (privacy): reuse still finds the model, and
    says which LoRA adapters are not on this machine."""
    folder = tmp_path / "tiny-sd15"
    folder.mkdir()
    register(studio.ctx, folder)
    other = tmp_path / "other-model"
    other.mkdir()
    studio.ctx.library.add(ModelRecord(id="other", task="image", format="diffusers", path=str(other),
                                       size_bytes=1, name="Other", family="sd15"))
    with qtbot.waitSignal(studio.models_listed, timeout=10000):
        studio.start()
    studio.select_model("other", load=False)
    studio.reuse_parameters(dict(PARAMS, model="tiny-sd15", loras=[{"path": "gone-style.safetensors", "weight": 0.8}]))
    assert studio.current_model_id() == "tiny-sd15"
    assert "LoRA not found here: gone-style.safetensors" in studio.status_label.text()
    assert studio.params.loras() == []


def test_a_crashed_sessions_trash_is_emptied_at_start(qtbot):
    import time

    old = trash_dir() / f"{time.time() - 100:.6f}"
    old.mkdir(parents=True)
    (old / "gone.png").write_bytes(png_bytes())
    ctx = AppContext()
    tab = StudioTab(ctx)
    qtbot.addWidget(tab)
    tab.start()
    qtbot.waitUntil(lambda: not old.exists(), timeout=5000)
    tab.shutdown()
    ctx.shutdown()


def test_dropping_a_png_restores_its_parameters(studio, qtbot, tmp_path):
    a1111 = ("a castle on a hill, \"oil painting\"\nNegative prompt: lowres\n"
             "Steps: 12, Sampler: Euler a, CFG scale: 6.5, Seed: 987654321, Size: 640x448, Model: v1-5")
    f = tmp_path / "a1111.png"
    f.write_bytes(png_bytes(a1111=a1111))
    with qtbot.waitSignal(studio.params_restored, timeout=5000):
        drop_file(studio, f)
    p = studio.params.get_params()
    assert p["prompt"] == 'a castle on a hill, "oil painting"' and p["negative"] == "lowres"
    assert (p["steps"], p["guidance"], p["seed"], p["scheduler"]) == (12, 6.5, 987654321, "Euler a")
    assert (p["width"], p["height"]) == (640, 448)

    g = tmp_path / "ours.png"
    g.write_bytes(png_bytes(params=dict(PARAMS, seed=42, prompt="ours")))
    with qtbot.waitSignal(studio.params_restored, timeout=5000):
        drop_file(studio, g)
    assert studio.params.get_params()["prompt"] == "ours" and studio.params.get_params()["seed"] == 42

    # a plain image (no parameters) becomes the init image
    h = tmp_path / "plain.png"
    h.write_bytes(png_bytes((120, 80)))
    drop_file(studio, h)
    qtbot.waitUntil(lambda: studio.canvas.has_image(), timeout=5000)
    assert studio.params.mode() == "img2img" and studio.params.get_params()["width"] == 120


def test_controls_have_accessible_names(studio):
    from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit, QSlider

    missing = []
    for cls in (QAbstractButton, QLineEdit, QPlainTextEdit, QComboBox, QAbstractSpinBox, QSlider):
        for w in studio.findChildren(cls):
            if w.isVisibleTo(studio) and not w.accessibleName() and not getattr(w, "text", lambda: "")():
                missing.append(f"{type(w).__name__} {w.objectName()!r}")
    assert not missing, missing


# ---------------------------------------------------------------------------------- real engine

@pytest.fixture(scope="module")
def tiny_sd15(tmp_path_factory) -> Path:
    from tests.diffusion import tiny_pipelines as tp

    return tp.build_sd15(tmp_path_factory.mktemp("studio_tiny") / "tiny-sd15")


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory):
    from desktop_app.engines.diffusion.client import EngineProcess

    eng = EngineProcess(env={"ATELIER_TEST_STEP_DELAY": "0.05"},
                        log_path=tmp_path_factory.mktemp("studio_engine") / "engine.log")
    yield eng
    eng.stop()


def register(ctx, folder: Path) -> ModelRecord:
    rec = ModelRecord(id="tiny-sd15", task="image", format="diffusers", path=str(folder), size_bytes=1000,
                      name="Tiny SD 1.5", family="sd15")
    ctx.library.add(rec)
    return rec


@pytest.fixture
def engine_studio(studio, qtbot, tiny_sd15, shared_engine):
    register(studio.ctx, tiny_sd15)
    studio.engine_provider = lambda: (shared_engine, False)
    with qtbot.waitSignal(studio.models_listed, timeout=10000):
        studio.start()
    assert studio.current_model_id() == "tiny-sd15"
    return studio


@pytest.mark.slow
def test_generate_shows_previews_and_adds_results_to_the_gallery(engine_studio, qtbot):
    tab = engine_studio
    with qtbot.waitSignal(tab.model_loaded, timeout=120000):
        tab.select_model("tiny-sd15")
    assert tab.params.get_params()["width"] == 64  # the model's native size
    assert "Tiny SD 1.5" in tab.ctx._loaded.get("image", "")
    tab.params.prompt.setPlainText("a red fox")
    tab.params.style_combo.setCurrentText("Watercolour")  # a style preset adds to the prompts
    tab.params.steps.setValue(6)
    tab.params.batch.setValue(2)
    tab.params.set_seed(77)
    previews = []
    tab.preview_shown.connect(previews.append)
    results = []
    tab.result_added.connect(results.append)
    finished = tab.generation_finished
    with qtbot.waitSignal(finished, timeout=120000) as blocker:
        assert tab.generate() is not None
        assert not tab.generate_button.isEnabled() and tab.cancel_button.isEnabled()
    assert blocker.args == ["done"]
    assert previews and len(results) == 2
    assert tab.gallery_model.rowCount() == 2
    from desktop_app.engines.diffusion.metadata import parse_parameters

    seeds = sorted(parse_parameters(Path(r))["seed"] for r in results)
    assert seeds == [77, 78]
    saved = parse_parameters(Path(results[0]))
    assert saved["prompt"].startswith("a red fox, watercolour painting") and "photo" in saved["negative"]
    assert Path(results[0]).parent == images_dir()
    assert "Done" in tab.progress.format() and tab.generate_button.isEnabled()
    assert not tab.preview.image().isNull()
    # a batch of two: both in the preview, as a grid; a click on a thumbnail then shows that one
    assert tab.preview.image().width() == 2 * 64 + 8 and tab.preview.caption.startswith("2 images")
    assert tab.gallery_panel.selected_item() is None
    shot(tab, "batch_grid")
    tab.gallery_panel.select_row(1)
    qtbot.waitUntil(lambda: tab.follower.path == tab.gallery_model.item(1).path, timeout=10000)
    assert tab.preview.image().width() == 64
    # its size and steps are remembered for this model (restored at the next start)
    assert tab.ctx.settings.get("studio_model_params")["tiny-sd15"]["steps"] == 6
    shot(tab, "generated")
    # Resources › Unload frees the pipeline in the engine process that holds it; the next run loads it again
    desc, pid = tab.ctx.loaded_slots()["image"]
    assert "Tiny SD 1.5" in desc and pid == tab.engine_provider()[0].pid
    with qtbot.waitSignal(tab.controller.load_ended, timeout=60000):
        assert tab.controller.unload() is not None
    assert "image" not in tab.ctx.loaded_slots() and tab.engine_provider()[0].ping()["model"] is None
    with qtbot.waitSignal(finished, timeout=120000) as blocker:
        tab.params.batch.setValue(1)
        assert tab.generate() is not None
    assert blocker.args == ["done"] and "image" in tab.ctx.loaded_slots()
    # one image: it is the selected one, and the preview shows that very file
    assert tab.gallery_panel.selected_item().path == tab.follower.path == tab.gallery_model.item(0).path


@pytest.mark.slow
def test_cancel_mid_run_stops_within_a_step_and_adds_nothing(engine_studio, qtbot):
    tab = engine_studio
    tab.params.prompt.setPlainText("cancel me")
    tab.params.steps.setValue(60)  # 60 × 0.05 s: plenty of time to cancel mid-run
    tab.params.width_box.setValue(64)
    tab.params.height_box.setValue(64)
    results = []
    tab.result_added.connect(results.append)
    shown = tab.preview_shown
    finished = tab.generation_finished
    with qtbot.waitSignal(shown, timeout=120000):
        tab.generate()
    import time

    t0 = time.perf_counter()
    with qtbot.waitSignal(finished, timeout=10000) as blocker:
        tab.cancel_button.click()
    assert blocker.args == ["cancelled"]
    assert time.perf_counter() - t0 < 3.0
    assert not results and "Cancelled at step" in tab.progress.format()
    shot(tab, "cancelled")
    # the engine is still usable: a short run completes
    tab.params.steps.setValue(2)
    with qtbot.waitSignal(finished, timeout=60000) as blocker:
        tab.generate()
    assert blocker.args == ["done"] and len(results) == 1


@pytest.mark.slow
def test_engine_killed_mid_run_says_so_and_restarts(engine_studio, qtbot, shared_engine):
    tab = engine_studio
    tab.params.prompt.setPlainText("crash")
    tab.params.steps.setValue(80)
    tab.params.width_box.setValue(64)
    tab.params.height_box.setValue(64)
    finished = tab.generation_finished
    with qtbot.waitSignal(tab.preview_shown, timeout=120000):
        tab.generate()
    with qtbot.waitSignal(finished, timeout=20000) as blocker:
        shared_engine.kill()
    assert blocker.args == ["error"]
    assert tab.banner.isVisible() and tab.restart_button.isVisible()
    assert "stopped" in tab.banner_label.text()
    assert "image" not in tab.ctx._loaded
    shot(tab, "engine_crashed")
    with qtbot.waitSignal(tab.model_loaded, timeout=120000):
        tab.restart_button.click()
    assert not tab.banner.isVisible() and shared_engine.alive


@pytest.mark.slow
def test_window_close_mid_generation_exits_cleanly(qtbot, tiny_sd15):
    from desktop_app.ui.main_window import MainWindow

    os.environ["ATELIER_TEST_STEP_DELAY"] = "0.1"
    try:
        win = MainWindow()
        qtbot.addWidget(win)
        register(win.ctx, tiny_sd15)
        win.show()
        win.start()
        tab = win.studio_tab
        win.tabs.setCurrentWidget(tab)
        qtbot.waitUntil(lambda: tab.current_model_id() == "tiny-sd15", timeout=10000)
        qtbot.waitUntil(lambda: "tiny-sd15" in tab._badges, timeout=10000)
        assert tab.badge_label.text().startswith("Fit:")
        tab.params.prompt.setPlainText("closing")
        tab.params.steps.setValue(200)
        tab.params.width_box.setValue(64)
        tab.params.height_box.setValue(64)
        with qtbot.waitSignal(tab.preview_shown, timeout=120000):
            tab.generate()
        shot(win, "window_generating")
        engine = tab.image_thread()._worker.state["engine"]
        pid = engine.pid
        assert pid and engine.alive
        win.close()
        assert not running_qthreads()
        assert not engine.alive
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        os.environ.pop("ATELIER_TEST_STEP_DELAY", None)


@pytest.mark.slow
def test_upscale_from_the_gallery_and_compare(studio, qtbot, tmp_path_factory, shared_engine):
    from desktop_app.core.model_files import record_for_path
    from tests.postprocess.models import write_tiny_esrgan

    sr = write_tiny_esrgan(tmp_path_factory.mktemp("studio_sr") / "tiny-esrgan-2x.safetensors", scale=2)
    studio.ctx.library.add(record_for_path(sr))
    studio.engine_provider = lambda: (shared_engine, False)
    src = images_dir() / "source.png"
    src.write_bytes(png_bytes((48, 32), params=dict(PARAMS, width=48, height=32)))
    with qtbot.waitSignal(studio.models_listed, timeout=10000):
        studio.start()
    qtbot.waitUntil(lambda: studio.gallery_model.rowCount() == 1, timeout=5000)
    studio.gallery.setCurrentIndex(studio.gallery_model.index(0))
    assert studio.gallery_panel.act_upscale.isEnabled() and "tiny-esrgan" in studio.gallery_panel.act_upscale.toolTip()
    with qtbot.waitSignal(studio.result_added, timeout=120000) as blocker:
        studio.gallery_panel.act_upscale.trigger()
    out = Path(blocker.args[0])
    qtbot.waitUntil(lambda: not studio.controller.post_busy, timeout=10000)
    assert QImage(str(out)).size().width() == 96
    from desktop_app.engines.diffusion.metadata import parse_parameters

    meta = parse_parameters(out)
    assert meta["operation"] == "Upscaled" and meta["source_image"] == str(src) and meta["prompt"] == PARAMS["prompt"]
    # the selection settles through queued events: wait for it rather than assume it is immediate
    qtbot.waitUntil(lambda: studio.gallery_model.rowCount() == 2 and studio.gallery_panel.act_compare.isEnabled(), timeout=5000)
    dlg = studio.gallery_panel.compare(src, out)
    qtbot.waitExposed(dlg)
    view = dlg.compare_view
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert view.split == pytest.approx(0.45)
    shot(dlg, "before_after")
    dlg.close()


@pytest.mark.slow
def test_remove_background_from_the_gallery(studio, qtbot, tmp_path_factory, shared_engine):
    from desktop_app.core.model_files import record_for_path
    from tests.postprocess.models import subject_image, write_tiny_segmenter

    seg = write_tiny_segmenter(tmp_path_factory.mktemp("studio_seg") / "tiny-u2net.onnx", outputs=7)
    studio.ctx.library.add(record_for_path(seg))
    studio.engine_provider = lambda: (shared_engine, False)
    src = images_dir() / "subject.png"
    subject_image(96, 64).save(src)
    with qtbot.waitSignal(studio.models_listed, timeout=10000):
        studio.start()
    qtbot.waitUntil(lambda: studio.gallery_model.rowCount() == 1, timeout=5000)
    studio.select_gallery_row(0)
    assert studio.gallery_panel.act_removebg.isEnabled() and not studio.gallery_panel.act_upscale.isEnabled()
    with qtbot.waitSignal(studio.result_added, timeout=120000) as blocker:
        studio.gallery_panel.act_removebg.trigger()
    out = QImage(blocker.args[0])
    assert out.hasAlphaChannel() and out.size().width() == 96
    assert out.pixelColor(48, 32).alpha() > 240 and out.pixelColor(0, 0).alpha() < 10
    qtbot.waitUntil(lambda: not studio.controller.post_busy, timeout=10000)
    assert studio.gallery_panel.act_compare.isEnabled()
    shot(studio, "background_removed")


@pytest.mark.slow
def test_inpaint_and_img2img_send_the_image_and_mask_to_the_engine(engine_studio, qtbot):
    tab = engine_studio
    img = QImage(64, 64, QImage.Format.Format_RGB32)
    img.fill(Qt.GlobalColor.darkCyan)
    tab.params.prompt.setPlainText("repaint the middle")
    tab.params.steps.setValue(4)
    tab.params.set_seed(5)
    tab.set_init_image(img, "inpaint")
    c = tab.canvas
    p = c.image_to_widget(QPointF(32, 32)).toPoint()
    qtbot.mousePress(c, Qt.MouseButton.LeftButton, pos=p)
    qtbot.mouseRelease(c, Qt.MouseButton.LeftButton, pos=p)
    assert not c.is_mask_empty()
    results = []
    tab.result_added.connect(results.append)
    finished = tab.generation_finished
    with qtbot.waitSignal(finished, timeout=120000) as blocker:
        assert tab.generate() is not None
    assert blocker.args == ["done"], tab.last_error
    from desktop_app.engines.diffusion.metadata import parse_parameters

    meta = parse_parameters(Path(results[-1]))
    assert meta["mode"] == "inpaint" and meta["seed"] == 5 and (meta["width"], meta["height"]) == (64, 64)
    tab.params.set_mode("img2img")
    tab.params.strength.setValue(0.5)
    with qtbot.waitSignal(finished, timeout=120000) as blocker:
        assert tab.generate() is not None
    assert blocker.args == ["done"], tab.last_error
    meta = parse_parameters(Path(results[-1]))
    assert meta["mode"] == "img2img" and meta["strength"] == 0.5
