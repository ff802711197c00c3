"""The Image Studio tab: prompt and parameters, model picker with fit badges, Generate/Cancel with
progress and a live preview, an inpainting canvas, and a gallery of results.

This module is the view: layout and wiring. The work is the controller's (``controller.py``: models,
loads, generation, post-processing, in the "image" model thread); the gallery is a panel
(``gallery_panel.py``), the init image and mask another (``canvas_page.py``), Enhance prompt a helper
(``enhance.py``). Progress and previews are coalesced to one repaint per 40 ms.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal, Slot
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget,
)

from desktop_app.qt.threads import JobHandle
from desktop_app.ui.studio import events as E
from desktop_app.ui.studio.banner import StudioBanner
from desktop_app.ui.studio.canvas_page import CanvasPage
from desktop_app.ui.studio.controller import StudioController
from desktop_app.ui.studio.enhance import PromptEnhancer
from desktop_app.ui.studio.gallery import new_image_path
from desktop_app.ui.studio.gallery_panel import GalleryPanel, PreviewFollower, caption_of, purge_old_trash
from desktop_app.ui.studio.image_view import ImageView
from desktop_app.ui.studio.params import ParamsPanel
from desktop_app.ui.widgets.throttle import Coalescer
from desktop_app.ui.widgets.named import named

log = logging.getLogger(__name__)
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FLUSH_MS = 40
NO_MODELS = "No image model installed: add one in the Models tab (a diffusers folder or a .safetensors checkpoint)."
POST_VERBS = {"upscale": "Upscaling", "remove-bg": "Removing background"}


class StudioTab(QWidget):
    """Image generation and editing. ``engine_provider`` (tests, bench): () -> (EngineProcess, owned)."""

    generation_finished = Signal(str)  # "done" | "cancelled" | "error"
    preview_shown = Signal(int)        # step of the preview just painted
    result_added = Signal(str)         # path of a new gallery image
    params_restored = Signal(object)   # the params dict applied from a dropped file / gallery
    models_listed = Signal(int)
    model_loaded = Signal(object)      # the engine's LOADED data

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("studioTab")
        self.setAccessibleName("Image Studio")
        self.setAcceptDrops(True)
        self.controller = StudioController(ctx, self)
        self._model_ids: list[str] = []
        self._pending_progress = None
        self._pending_preview = None
        self._shut_down = False
        self._sized_for: str | None = None  # the model whose start size and steps are in the panel
        self.last_error: tuple[str, str] | None = None
        self._build()
        self._wire()
        self._flush_timer = Coalescer(FLUSH_MS, self._on_flush, self)
        self.ctx.hardware_ready.connect(lambda _hw: self.refresh_models())
        self.ctx.library_changed.connect(self.refresh_models)

    @property
    def engine_provider(self):
        return self.controller.engine_provider

    @engine_provider.setter
    def engine_provider(self, provider) -> None:
        self.controller.engine_provider = provider

    # ------------------------------------------------------------------------------ layout
    def _build(self) -> None:
        outer = QHBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        split = named(QSplitter(Qt.Orientation.Horizontal, self), "studioSplitter")
        outer.addWidget(split)

        # left: model, parameters, generate
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 6, 0)
        model_row = QHBoxLayout()
        self.model_combo = named(QComboBox(), "studioModel", "Image model")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(16)
        self.model_combo.setPlaceholderText("No image model installed")
        self.model_combo.activated.connect(self._on_model_activated)
        self.model_combo.currentIndexChanged.connect(self._on_model_index_changed)
        mlabel = QLabel("&Model")
        mlabel.setBuddy(self.model_combo)
        model_row.addWidget(mlabel)
        model_row.addWidget(self.model_combo, 1)
        lv.addLayout(model_row)
        self.badge_label = named(QLabel(""), "studioFitBadge", "How the model fits this computer")
        self.badge_label.setWordWrap(True)
        lv.addWidget(self.badge_label)

        self.params = ParamsPanel(background=self.ctx.background)
        self.enhancer = PromptEnhancer(self.ctx, self.params, self.controller, self.current_record, self)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.params)
        lv.addWidget(scroll, 1)

        self.banner = StudioBanner()
        self.banner_label, self.restart_button = self.banner.label, self.banner.restart_button
        self.banner.restart_requested.connect(self.restart_engine)
        self.banner.dismissed.connect(self._forget_error)
        lv.addWidget(self.banner)

        btn_row = QHBoxLayout()
        self.generate_button = named(QPushButton("&Generate"), "studioGenerate",
                                     "Generate images", "Generate (Ctrl+Enter)")
        self.generate_button.setDefault(True)
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = named(QPushButton("Cancel"), "studioCancel",
                                   "Cancel generation", "Cancel (Esc): stops within one step")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        btn_row.addWidget(self.generate_button, 2)
        btn_row.addWidget(self.cancel_button, 1)
        lv.addLayout(btn_row)
        self.progress = named(QProgressBar(), "studioProgress", "Generation progress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Ready")
        lv.addWidget(self.progress)
        self.status_label = named(QLabel("Choose a model and write a prompt."), "studioStatus", "Image engine status")
        self.status_label.setMinimumHeight(2 * self.fontMetrics().height() + 4)  # two lines, never cut
        self.status_label.setWordWrap(True)
        lv.addWidget(self.status_label)
        left.setMinimumWidth(330)
        split.addWidget(left)

        # right: preview / canvas on top, gallery below
        right = QSplitter(Qt.Orientation.Vertical)
        self.view_tabs = named(QTabWidget(), "studioViewTabs", "Preview and init image")
        self.preview = named(ImageView(placeholder="The live preview and the result appear here."), "studioPreview",
                             "Live preview")
        self.view_tabs.addTab(self.preview, "Preview")
        self.canvas_page = CanvasPage()
        self.canvas = self.canvas_page.canvas
        self.view_tabs.addTab(self.canvas_page, "Init image && mask")
        right.addWidget(self.view_tabs)
        self.gallery_panel = GalleryPanel(self.ctx.background)
        self.gallery, self.gallery_model = self.gallery_panel.gallery, self.gallery_panel.gallery_model
        self.follower = PreviewFollower(self.gallery_panel, self.preview, self.ctx.background,
                                        reveal=lambda: self.view_tabs.setCurrentWidget(self.preview))
        right.addWidget(self.gallery_panel)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([360, 840])

        for keys, slot in (("Ctrl+Return", self.generate), ("Ctrl+Enter", self.generate), ("Esc", self.cancel)):
            sc = QShortcut(QKeySequence(keys), self, activated=slot)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)

    def _wire(self) -> None:
        c = self.controller
        c.models_listed.connect(self._on_models_listed)
        c.models_failed.connect(lambda msg: self.show_error("internal", f"Could not read the model library: {msg}"))
        c.loaded.connect(self._on_engine_loaded)
        c.progress.connect(self._on_progress)
        c.preview.connect(self._on_preview)
        c.post_progress.connect(self._on_post_progress)
        c.result.connect(self._on_result)
        c.status.connect(self.status_label.setText)
        c.engine_error.connect(self._on_engine_error)
        c.load_ended.connect(self._on_load_ended)
        c.generation_ended.connect(self._on_generation_ended)
        c.post_ended.connect(self._on_post_ended)
        gp = self.gallery_panel
        gp.reuse_requested.connect(self.reuse_parameters)
        gp.send_requested.connect(lambda path, mode: self.set_init_image(QImage(path), mode))
        gp.postprocess_requested.connect(self.postprocess)
        gp.status.connect(self.status_label.setText)
        gp.error.connect(self.show_error)
        self.canvas_page.open_requested.connect(self._on_open_init_clicked)
        self.params.mode_changed.connect(self._on_mode_changed)
        self.params.lora_refused.connect(lambda text: self.show_error("model_format", text))
        self._on_mode_changed(self.params.mode())
        self._update_actions()

    # ------------------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Background work only: list the image models and the gallery's files."""
        self.refresh_models()
        self.refresh_gallery()
        self.ctx.background.run(lambda t, now=time.time(): purge_old_trash(now, t))

    def shutdown(self) -> None:
        """Cancel generation; the context then shuts the threads (the engine child is stopped there)."""
        if self._shut_down:
            return
        self._shut_down = True
        self._flush_timer.stop()
        self.controller.shutdown()
        self.gallery_panel.purge_trash()

    def image_thread(self):
        """The "image" model thread (the controller's): it owns the engine client."""
        return self.controller.thread

    @property
    def busy(self) -> bool:
        return self.controller.busy

    # ------------------------------------------------------------------------------ models
    def refresh_models(self) -> None:
        if not self._shut_down:
            self.controller.refresh_models()

    @property
    def _badges(self) -> dict:
        return self.controller.badges

    @Slot(object)
    def _on_models_listed(self, recs) -> None:
        if self._shut_down:
            return
        current = self.current_model_id()
        badges = self.controller.badges
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self._model_ids = [r.id for r in recs]
        for i, r in enumerate(recs):
            badge = badges.get(r.id)
            self.model_combo.addItem(r.display_name + (f"  —  {badge[0]}" if badge else ""))
            self.model_combo.setItemData(i, f"{r.path}\n{badge[1] if badge else ''}".strip(),
                                         Qt.ItemDataRole.ToolTipRole)
        if current in self._model_ids:
            self.model_combo.setCurrentIndex(self._model_ids.index(current))
        elif recs:
            self.model_combo.setCurrentIndex(0)
        self.model_combo.blockSignals(False)
        self._on_model_index_changed(self.model_combo.currentIndex())
        if not recs:
            self.status_label.setText(NO_MODELS)
        elif self.status_label.text() == NO_MODELS:  # a model was added: the footer follows at once
            self.status_label.setText(f"{len(recs)} image model(s) installed: choose one, write a prompt, Generate.")
        self._update_actions()
        self.models_listed.emit(len(recs))

    def current_model_id(self) -> str | None:
        # Our own list, not currentData(): on Python 3.11, PySide6 6.12's currentData() of an empty
        # combo returns None one reference short, and polling it crashes the interpreter (seen here).
        i = self.model_combo.currentIndex()
        return self._model_ids[i] if 0 <= i < len(self._model_ids) else None

    def current_record(self):
        mid = self.current_model_id()
        return self.controller.records.get(mid) if mid else None

    def select_model(self, model_id: str, load: bool = True) -> bool:
        if model_id not in self._model_ids:
            return False
        i = self._model_ids.index(model_id)
        self.model_combo.setCurrentIndex(i)
        if load:
            self._on_model_activated(i)
        return True

    @Slot(int)
    def _on_model_index_changed(self, _i: int) -> None:
        rec = self.current_record()
        if rec is not None and rec.id != self._sized_for and not self.busy:
            self._apply_start_params(rec)
        badge = self.controller.badges.get(rec.id) if rec is not None else None
        if rec is None:
            self.badge_label.setText("")
        elif badge:
            self.badge_label.setText(f"Fit: <b>{badge[0]}</b>" + (f" — {badge[1]}" if badge[1] else ""))
        else:
            self.badge_label.setText("Fit: checking…" if self.ctx.hardware is None else "")

    @Slot(int)
    def _on_model_activated(self, _i: int) -> None:
        """The user chose a model: load it now in the engine (first time: the child starts)."""
        rec = self.current_record()
        if rec is None or self._shut_down or self.busy:
            return
        self.status_label.setText(f"Loading {rec.display_name}…")
        self.progress.setRange(0, 0)  # busy indicator
        self.controller.load(rec)
        self._update_actions()

    def _apply_start_params(self, rec, loaded: dict | None = None) -> None:
        sp = self.controller.start_params(rec, loaded)
        self._sized_for = rec.id
        self.params.set_native(sp["native"])
        self.params.width_box.setValue(sp["width"])
        self.params.height_box.setValue(sp["height"])
        self.params.steps.setValue(sp["steps"])

    # ------------------------------------------------------------------------------ generate
    def build_request_parts(self) -> tuple[dict, list[str]]:
        """The params and what is wrong with them (empty list: ready to go)."""
        p = self.params.get_params()
        errs = self.params.validate()
        if self.current_record() is None:
            errs.insert(0, "Choose an image model first (install one in the Models tab).")
        if p["mode"] in ("img2img", "inpaint") and not self.canvas.has_image():
            errs.append("This mode needs an init image: open one, drop one, or send one from the gallery.")
        if p["mode"] == "inpaint" and self.canvas.has_image() and self.canvas.is_mask_empty():
            errs.append("Paint the area to repaint on the canvas first.")
        return p, errs

    @Slot()
    def generate(self) -> JobHandle | None:
        """Start a generation from the panel's settings; returns its handle (None if refused)."""
        if self.busy or self._shut_down:
            return None
        p, errs = self.build_request_parts()
        if errs:
            self.show_error("invalid_request", "\n".join(errs))
            return None
        self.banner.dismiss()
        rec = self.current_record()
        init = self.canvas.image().copy() if p["mode"] != "txt2img" else None
        mask = self.canvas.mask_image() if p["mode"] == "inpaint" else None
        handle = self.controller.generate(rec, p, init, mask)
        self.controller.remember_params(rec, p)
        self.progress.setRange(0, p["steps"])
        self.progress.setValue(0)
        self.progress.setFormat("Starting…")
        self.status_label.setText(f"Generating with {rec.display_name}…")
        self.view_tabs.setCurrentWidget(self.preview)
        self._update_actions()
        return handle

    @Slot()
    def cancel(self) -> None:
        if self.controller.cancel() == "gen":
            self.status_label.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    # ------------------------------------------------------------------------------ the controller's signals
    def _on_progress(self, item) -> None:
        self._pending_progress = item
        self._flush_timer.poke()

    def _on_preview(self, item) -> None:
        self._pending_preview = item
        self._flush_timer.poke()

    @Slot()
    def _on_flush(self) -> None:
        """Coalesced UI update: the latest progress numbers and the latest preview only."""
        item, self._pending_progress = self._pending_progress, None
        if item is not None and self.busy:
            if self.progress.maximum() != item.total:
                self.progress.setRange(0, max(1, item.total))
            self.progress.setValue(item.step)
            speed = f" · {item.it_s:.2f} it/s" if item.it_s else ""
            img = f" · image {item.image_index + 1}/{item.batch}" if item.batch and item.batch > 1 else ""
            self.progress.setFormat(f"Step {item.step}/{item.total}{speed}{img}")
        prev, self._pending_preview = self._pending_preview, None
        if prev is not None and self.busy:
            self.follower.show(prev.image, f"Preview · step {prev.step}/{prev.total}")
            self.preview_shown.emit(prev.step)

    def _on_result(self, item: E.Result, source: str) -> None:
        if self._shut_down:
            return
        self.gallery_model.prepend(Path(item.path), item.params, item.image)
        if source == "generate":
            self._pending_preview = None
        else:
            self.view_tabs.setCurrentWidget(self.preview)
        self.follower.result(item.image, caption_of(item.params, item.image), Path(item.path), source == "generate")
        self.gallery_panel.select_row(0)  # the new result is the selected one (the toolbar acts on it)
        self.result_added.emit(str(item.path))

    def _on_engine_loaded(self, data: dict) -> None:
        name = data.get("name", "")
        self.params.set_max_size(data.get("max_size"))
        self.params.set_model_limits(data.get("schedulers"), data.get("size_multiple"))
        native = data.get("native_size")
        rec = self.current_record()
        if native and native != self.controller.loaded_native:
            self.controller.loaded_native = native
            if rec is not None and not self.busy:
                self._apply_start_params(rec, data)
        where = data.get("placement_text") or f"{data.get('device', 'cpu')}"
        self.status_label.setText(f"Loaded {name} {where} in {data.get('seconds', 0):.1f} s.")
        self.model_loaded.emit(data)

    def _on_engine_error(self, kind: str, message: str) -> None:
        if not self._shut_down:
            self.show_error(kind, message)

    def _progress_done(self, text: str, value: int = 0) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(value)
        self.progress.setFormat(text)

    def _on_load_ended(self, how: str) -> None:
        if not self.busy:
            if how == "done":
                self._progress_done("Ready")
            elif how == "failed":
                self._progress_done("Failed")
            else:
                self.progress.setRange(0, 1)
        self._update_actions()

    def _on_generation_ended(self, reason: str, images: int) -> None:
        if reason == "cancelled":
            self._pending_preview = self._pending_progress = None
            self.progress.setFormat(f"Cancelled at step {self.progress.value()}/{self.progress.maximum()}")
            self.status_label.setText("Cancelled (nothing was decoded).")
        elif reason == "done":
            self._on_flush()
            self.progress.setValue(self.progress.maximum())
            self.progress.setFormat(f"Done · {images} image(s)")
            self.status_label.setText(f"Done: {images} image(s) saved to the gallery.")
            self.follower.end_batch()  # a batch of several: all of them, as a grid, in the preview
        else:
            self._progress_done("Failed")
        self._update_actions()
        self.generation_finished.emit(reason)

    # ------------------------------------------------------------------------------ errors
    def show_error(self, kind: str, message: str) -> None:
        self.last_error = (kind, message)
        self.banner.show_error(kind, message)
        self.status_label.setText("See the message above.")

    def _forget_error(self) -> None:
        self.last_error = None

    @Slot()
    def restart_engine(self) -> JobHandle | None:
        if self.busy or self._shut_down:
            return None
        self.banner.dismiss()
        self.status_label.setText("Restarting the image engine…")
        return self.controller.restart(self.current_record())

    # ------------------------------------------------------------------------------ mode / init image
    @Slot(str)
    def _on_mode_changed(self, mode: str) -> None:
        self.canvas_page.set_mode(mode)
        self.view_tabs.setTabEnabled(1, mode != "txt2img")
        if mode != "txt2img" and not self.busy:
            self.view_tabs.setCurrentIndex(1)
        elif mode == "txt2img":
            self.view_tabs.setCurrentIndex(0)

    @Slot()
    def _on_open_init_clicked(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Open an init image", "", IMAGE_FILTER)
        if f:
            self.set_init_image(QImage(f))

    def set_init_image(self, img: QImage, mode: str | None = None) -> None:
        if img.isNull():
            self.show_error("invalid_request", "That file is not an image Atelier can read.")
            return
        self.canvas.set_image(img)
        if mode:
            self.params.set_mode(mode)
        # the init image's size (rounded down to multiples of 8) becomes the output size
        w, h = max(64, img.width() // 8 * 8), max(64, img.height() // 8 * 8)
        self.params.width_box.setValue(min(w, self.params.max_size))
        self.params.height_box.setValue(min(h, self.params.max_size))
        if self.params.mode() != "txt2img":
            self.view_tabs.setCurrentIndex(1)

    # ------------------------------------------------------------------------------ gallery
    def refresh_gallery(self) -> None:
        self.gallery_panel.refresh()

    def select_gallery_row(self, row: int) -> None:
        self.gallery_panel.select_row(row)

    def _update_actions(self) -> None:
        c = self.controller
        self.gallery_panel.update_actions(c.post_models, c.post_busy)
        self.generate_button.setEnabled(not c.busy and not self._shut_down)
        self.cancel_button.setEnabled(c.busy or c.post_busy)
        self.model_combo.setEnabled(not c.busy)

    def reuse_parameters(self, params: dict | None, source: str = "gallery") -> list[str]:
        if not params:
            self.show_error("invalid_request", "This image carries no generation parameters.")
            return []
        applied = self.params.set_params(params)
        mid = self.controller.record_for_params(params)
        if mid:
            self.select_model(mid, load=False)
        gone = f" LoRA not found here: {', '.join(self.params.missing_loras)}." if self.params.missing_loras else ""
        self.status_label.setText(f"Parameters restored from {source} (seed {params.get('seed', 'random')}).{gone}")
        self.params_restored.emit(params)
        return applied

    # ------------------------------------------------------------------------------ post-processing
    def postprocess(self, op: str, model_id: str | None = None) -> JobHandle | None:
        from desktop_app.ui.studio.postprocess import OPERATIONS

        it = self.gallery_panel.selected_item()
        task = OPERATIONS[op][0]
        models = self.controller.post_models.get(task) or []
        if it is None or self.controller.post_busy:
            return None
        rec = next((m for m in models if m.id == model_id), None) if model_id else (models[0] if models else None)
        if rec is None:
            self.show_error("model_format", f"No {task.replace('_', ' ')} model is installed: add one in the Models tab.")
            return None
        out = new_image_path("upscaled" if op == "upscale" else "cutout")
        handle = self.controller.postprocess(op, it.path, it.params, rec, out)
        self.progress.setRange(0, 0)
        self.progress.setFormat(POST_VERBS[op] + "…")
        self.status_label.setText(f"{self.progress.format()} ({it.path.name})")
        self._update_actions()
        return handle

    def _on_post_progress(self, item) -> None:
        if item.total:
            self.progress.setRange(0, item.total)
            self.progress.setValue(item.step)
        self.progress.setFormat(item.text or "%v / %m")

    def _on_post_ended(self, reason: str) -> None:
        if reason == "done":
            self._progress_done("Done", 1)
            self.status_label.setText("Done: the result is first in the gallery (Before / after compares it).")
        else:
            self._progress_done("Cancelled" if reason == "cancelled" else "Failed")
        self._update_actions()

    # ------------------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, ev) -> None:  # noqa: N802 - Qt API
        if self._dropped_path(ev.mimeData()) is not None:
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dragMoveEvent(self, ev) -> None:  # noqa: N802 - Qt API
        if self._dropped_path(ev.mimeData()) is not None:
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:  # noqa: N802 - Qt API
        path = self._dropped_path(ev.mimeData())
        if path is None:
            ev.ignore()
            return
        ev.acceptProposedAction()
        self.open_dropped_file(path)

    @staticmethod
    def _dropped_path(mime: QMimeData) -> Path | None:
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile() and Path(url.toLocalFile()).suffix.lower() in IMAGE_SUFFIXES:
                return Path(url.toLocalFile())
        return None

    def open_dropped_file(self, path: Path) -> None:
        """Read the file's parameters off the GUI thread; restore them, or use it as the init image."""

        def work(_token):
            from desktop_app.engines.diffusion.metadata import parse_parameters

            try:
                params = parse_parameters(path) if path.suffix.lower() == ".png" else None
            except Exception:  # noqa: BLE001 - not a readable PNG: maybe still an image
                params = None
            return params, QImage(str(path))

        def done(result):
            params, img = result
            if self._shut_down:
                return
            if params:
                self.reuse_parameters(params, source=f"{path.name} ({params.get('source', 'png')})")
            elif not img.isNull():
                mode = self.params.mode() if self.params.mode() != "txt2img" else "img2img"
                self.set_init_image(img, mode)
                self.status_label.setText(f"{path.name} has no generation parameters: loaded it as the init image.")
            else:
                self.show_error("invalid_request", f"{path.name} is not an image Atelier can read.")

        self.ctx.background.run(work, on_success=done,
                                on_failure=lambda exc: self.show_error("invalid_request", f"Cannot read {path.name}: {exc}"))

