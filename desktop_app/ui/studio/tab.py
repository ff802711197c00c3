"""The Image Studio tab: prompt and parameters, model picker with fit badges, Generate/Cancel with
progress and a live preview, an inpainting canvas, and a gallery of results.

The diffusion engine lives in a child process (``engines/diffusion/client.py``); its blocking
client runs in the "image" model thread (jobs in ``jobs.py``). The GUI thread only receives
small items (progress numbers, decoded QImages, saved file paths) and coalesces them with a
40 ms timer, so it never stalls. Upscaling / background removal from the gallery run in the same
engine child (``postprocess.py``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal, Slot
from PySide6.QtGui import QAction, QGuiApplication, QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSplitter,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from desktop_app.ui.studio import events as E
from desktop_app.ui.widgets.throttle import Coalescer
from desktop_app.qt.threads import JobHandle, watch
from desktop_app.ui.studio import jobs
from desktop_app.ui.studio.gallery import GalleryModel, GalleryView, new_image_path, scan_images
from desktop_app.ui.studio.params import ParamsPanel
from desktop_app.ui.widgets.fit import plan_or_error
from desktop_app.ui.studio.image_view import CompareView, ImageView
from desktop_app.ui.studio.mask_canvas import MaskCanvas, qimage_to_png

log = logging.getLogger(__name__)
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
FLUSH_MS = 40


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
        self.engine_provider = None
        self._thread = None
        self._gen_job: JobHandle | None = None
        self._load_job: JobHandle | None = None
        self._post_job: JobHandle | None = None
        self._records: dict[str, object] = {}
        self._model_ids: list[str] = []
        self._badges: dict[str, str] = {}
        self._loaded_path: str | None = None
        self._loaded_native: int | None = None
        self._pending_progress = None
        self._pending_preview = None
        self._shut_down = False
        self._post_models: dict[str, list] = {"upscale": [], "background_removal": []}
        self.last_error: tuple[str, str] | None = None
        self._job_error = False
        self._post_error = False
        self._results_this_job = 0
        self._build()
        self._flush_timer = Coalescer(FLUSH_MS, self._on_flush, self)
        self.ctx.hardware_ready.connect(self._on_hardware_ready)
        self.ctx.library_changed.connect(self._on_library_changed)

    # ------------------------------------------------------------------------------ layout
    def _build(self) -> None:
        outer = QHBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.setObjectName("studioSplitter")
        outer.addWidget(split)

        # left: model, parameters, generate
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 6, 0)
        model_row = QHBoxLayout()
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("studioModel")
        self.model_combo.setAccessibleName("Image model")
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
        self.badge_label = QLabel("")
        self.badge_label.setObjectName("studioFitBadge")
        self.badge_label.setAccessibleName("How the model fits this computer")
        self.badge_label.setWordWrap(True)
        lv.addWidget(self.badge_label)

        self.params = ParamsPanel()
        self.params.mode_changed.connect(self._on_mode_changed)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.params)
        lv.addWidget(scroll, 1)

        # error / crash banner
        self.banner = QFrame()
        self.banner.setObjectName("studioBanner")
        self.banner.setFrameShape(QFrame.Shape.StyledPanel)
        bl = QHBoxLayout(self.banner)
        bl.setContentsMargins(6, 4, 6, 4)
        self.banner_label = QLabel()
        self.banner_label.setObjectName("studioBannerText")
        self.banner_label.setWordWrap(True)
        self.banner_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.restart_button = QPushButton("Restart engine")
        self.restart_button.setObjectName("studioRestartEngine")
        self.restart_button.setAccessibleName("Restart the image engine")
        self.restart_button.clicked.connect(self._on_restart_clicked)
        self.banner_close = QPushButton("Dismiss")
        self.banner_close.setObjectName("studioBannerDismiss")
        self.banner_close.setAccessibleName("Dismiss message")
        self.banner_close.clicked.connect(self._on_banner_dismiss)
        bl.addWidget(self.banner_label, 1)
        bv = QVBoxLayout()
        bv.addWidget(self.restart_button)
        bv.addWidget(self.banner_close)
        bl.addLayout(bv)
        self.banner.setVisible(False)
        lv.addWidget(self.banner)

        btn_row = QHBoxLayout()
        self.generate_button = QPushButton("&Generate")
        self.generate_button.setObjectName("studioGenerate")
        self.generate_button.setAccessibleName("Generate images")
        self.generate_button.setToolTip("Generate (Ctrl+Enter)")
        self.generate_button.setDefault(True)
        self.generate_button.clicked.connect(self._on_generate_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("studioCancel")
        self.cancel_button.setAccessibleName("Cancel generation")
        self.cancel_button.setToolTip("Cancel (Esc): stops within one step")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        btn_row.addWidget(self.generate_button, 2)
        btn_row.addWidget(self.cancel_button, 1)
        lv.addLayout(btn_row)
        self.progress = QProgressBar()
        self.progress.setObjectName("studioProgress")
        self.progress.setAccessibleName("Generation progress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Ready")
        lv.addWidget(self.progress)
        self.status_label = QLabel("Choose a model and write a prompt.")
        self.status_label.setObjectName("studioStatus")
        self.status_label.setAccessibleName("Image engine status")
        self.status_label.setWordWrap(True)
        lv.addWidget(self.status_label)
        left.setMinimumWidth(330)
        split.addWidget(left)

        # right: preview / canvas on top, gallery below
        right = QSplitter(Qt.Orientation.Vertical)
        self.view_tabs = QTabWidget()
        self.view_tabs.setObjectName("studioViewTabs")
        self.view_tabs.setAccessibleName("Preview and init image")
        self.preview = ImageView(placeholder="The live preview and the result appear here.")
        self.preview.setObjectName("studioPreview")
        self.preview.setAccessibleName("Live preview")
        self.view_tabs.addTab(self.preview, "Preview")
        self.view_tabs.addTab(self._build_canvas_page(), "Init image && mask")
        right.addWidget(self.view_tabs)

        gal = QWidget()
        gv = QVBoxLayout(gal)
        gv.setContentsMargins(0, 0, 0, 0)
        self.gallery_model = GalleryModel(self.ctx.background, self)
        self.gallery = GalleryView()
        self.gallery.setModel(self.gallery_model)
        self.gallery.context_menu_requested.connect(self._on_gallery_menu)
        self.gallery.activated_row.connect(self._on_gallery_activated)
        self.gallery.selectionModel().selectionChanged.connect(self._on_gallery_selection)
        self.gallery_bar = QToolBar()
        self.gallery_bar.setObjectName("studioGalleryBar")
        self.gallery_bar.setAccessibleName("Gallery actions")
        self._make_actions()
        gv.addWidget(self.gallery_bar)
        gv.addWidget(self.gallery, 1)
        right.addWidget(gal)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([360, 840])

        gen_sc = QShortcut(QKeySequence("Ctrl+Return"), self, activated=self._on_generate_clicked)
        gen_sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        gen_sc2 = QShortcut(QKeySequence("Ctrl+Enter"), self, activated=self._on_generate_clicked)
        gen_sc2.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        esc = QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=self._on_cancel_clicked)
        esc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._on_mode_changed(self.params.mode())
        self._update_actions()

    def _build_canvas_page(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(0, 4, 0, 0)
        bar = QHBoxLayout()
        self.open_image_button = QPushButton("Open image…")
        self.open_image_button.setObjectName("studioOpenInit")
        self.open_image_button.setAccessibleName("Open an init image")
        self.open_image_button.clicked.connect(self._on_open_init_clicked)
        bar.addWidget(self.open_image_button)
        self.brush_label = QLabel("Brush 32 px")
        self.brush_slider = QSlider(Qt.Orientation.Horizontal)
        self.brush_slider.setObjectName("studioBrushSize")
        self.brush_slider.setAccessibleName("Brush size")
        self.brush_slider.setRange(2, 256)
        self.brush_slider.setValue(32)
        self.brush_slider.setMaximumWidth(160)
        self.brush_slider.valueChanged.connect(self._on_brush_changed)
        bar.addWidget(self.brush_label)
        bar.addWidget(self.brush_slider)
        self.erase_button = QPushButton("Erase")
        self.erase_button.setObjectName("studioErase")
        self.erase_button.setAccessibleName("Erase mode")
        self.erase_button.setCheckable(True)
        self.erase_button.setToolTip("Erase the mask (or paint with the right mouse button)")
        self.erase_button.toggled.connect(self._on_erase_toggled)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setObjectName("studioUndoMask")
        self.undo_button.setAccessibleName("Undo mask stroke")
        self.undo_button.setToolTip("Undo (Ctrl+Z)")
        self.undo_button.clicked.connect(self._on_undo_mask)
        self.clear_button = QPushButton("Clear mask")
        self.clear_button.setObjectName("studioClearMask")
        self.clear_button.setAccessibleName("Clear mask")
        for b in (self.erase_button, self.undo_button, self.clear_button):
            bar.addWidget(b)
        bar.addStretch(1)
        v.addLayout(bar)
        self.canvas = MaskCanvas()
        self.canvas.mask_changed.connect(self._on_mask_changed)
        self.clear_button.clicked.connect(self.canvas.clear_mask)
        v.addWidget(self.canvas, 1)
        undo = QShortcut(QKeySequence.StandardKey.Undo, page, activated=self._on_undo_mask)
        undo.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        return page

    def _make_actions(self) -> None:
        def act(name, text, slot, tip="", shortcut=None):
            a = QAction(text, self)
            a.setObjectName(name)
            a.setToolTip(tip or text)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
                a.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                self.gallery.addAction(a)
            a.triggered.connect(slot)
            return a

        self.act_open = act("actOpen", "Open", self._on_open_large, "Open the image large")
        self.act_copy = act("actCopy", "Copy", self._on_copy, "Copy the image to the clipboard", QKeySequence.StandardKey.Copy)
        self.act_save = act("actSave", "Save as…", self._on_save_as, "Save a copy of the image")
        self.act_delete = act("actDelete", "Delete", self._on_delete_clicked, "Delete the image file", QKeySequence.StandardKey.Delete)
        self.act_reuse = act("actReuse", "Reuse parameters", self._on_reuse, "Put this image's prompt, seed and settings back")
        self.act_img2img = act("actImg2img", "→ Img2img", self._on_send_img2img, "Use as the init image")
        self.act_inpaint = act("actInpaint", "→ Inpaint", self._on_send_inpaint, "Use as the image to inpaint")
        self.act_upscale = act("actUpscale", "Upscale", self._on_upscale, "Super-resolution with an upscaling model")
        self.act_removebg = act("actRemoveBg", "Remove BG", self._on_remove_bg, "Cut out the subject")
        self.act_compare = act("actCompare", "Before / after", self._on_compare, "Compare with the image it was made from")
        for a in (self.act_open, self.act_copy, self.act_save, self.act_delete, None, self.act_reuse,
                  self.act_img2img, self.act_inpaint, None, self.act_upscale, self.act_removebg, self.act_compare):
            if a is None:
                self.gallery_bar.addSeparator()
            else:
                self.gallery_bar.addAction(a)
        for a in self.gallery_bar.actions():
            w = self.gallery_bar.widgetForAction(a)
            if w is not None and a.text():
                w.setAccessibleName(a.toolTip().split(":")[0] if a.text() != a.toolTip() else a.text())

    # ------------------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Background work only: list the image models and the gallery's files."""
        self.refresh_models()
        self.refresh_gallery()

    def shutdown(self) -> None:
        """Cancel generation; the context then shuts the threads (the engine child is stopped there)."""
        if self._shut_down:
            return
        self._shut_down = True
        self._flush_timer.stop()
        if self._thread is not None:
            self._thread.cancel()

    def image_thread(self):
        """The "image" model thread: it owns the engine client; generation, loads and
        post-processing jobs all run there, one after another (each job's handle reaches its slots)."""
        if self._thread is None:
            self._thread = self.ctx.model_thread("image")
        return self._thread

    def _submit_engine_job(self, job, what: str, *, gen: bool):
        """A load (``gen`` False) or generation job, its handle wired to this tab's slots."""
        attr = "_gen_job" if gen else "_load_job"
        return watch(self.image_thread().submit(job, what), lambda h: h is getattr(self, attr),
                     progress=self._on_engine_item,
                     succeeded=self._on_gen_done if gen else self._on_load_done,
                     failed=lambda exc: self._on_engine_failed(exc, gen),
                     cancelled=self._on_gen_cancelled if gen else self._on_load_cancelled)

    @property
    def busy(self) -> bool:
        return self._gen_job is not None

    # ------------------------------------------------------------------------------ models
    def refresh_models(self) -> None:
        lib = self.ctx.library
        hw = self.ctx.hardware

        def work(_token):
            every = lib.list()  # one read of the library file for the three lists
            recs = [r for r in every if r.task == "image"]
            post = {task: [r for r in every if r.task == task] for task in ("upscale", "background_removal")}
            badges = {}
            # plan_for_record detects the hardware itself (cached) when it is not known yet
            for r in recs:
                plan, exc = plan_or_error(r, hw)
                if exc is None:
                    badges[r.id] = (plan.badge, getattr(plan, "note", "") or "", plan.plan)
                else:  # a broken record shows its error as badge
                    badges[r.id] = ("Unreadable", str(exc), "error")
            return recs, badges, post

        self.ctx.background.run(work, on_success=self._on_models_listed, on_failure=self._on_models_failed)

    @Slot(object)
    def _on_models_listed(self, result) -> None:
        if self._shut_down:
            return
        recs, badges, post = result
        self._post_models = post
        current = self.current_model_id()
        self._records = {r.id: r for r in recs}
        self._badges.update(badges)
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self._model_ids = [r.id for r in recs]
        for r in recs:
            badge = self._badges.get(r.id)
            text = r.display_name + (f"  —  {badge[0]}" if badge else "")
            self.model_combo.addItem(text)
            i = self.model_combo.count() - 1
            self.model_combo.setItemData(i, f"{r.path}\n{badge[1] if badge else ''}".strip(), Qt.ItemDataRole.ToolTipRole)
        if current and current in self._records:
            self.model_combo.setCurrentIndex(self._model_ids.index(current))
        elif recs:
            self.model_combo.setCurrentIndex(0)
        self.model_combo.blockSignals(False)
        self._on_model_index_changed(self.model_combo.currentIndex())
        if not recs:
            self.status_label.setText("No image model installed: add one in the Models tab "
                                      "(a diffusers folder or a .safetensors checkpoint).")
        self._update_actions()
        self.models_listed.emit(len(recs))

    @Slot(object)
    def _on_models_failed(self, exc) -> None:
        self.show_error("internal", f"Could not read the model library: {exc}")

    @Slot(object)
    def _on_hardware_ready(self, _hw) -> None:
        self.refresh_models()

    @Slot()
    def _on_library_changed(self) -> None:
        if not self._shut_down:
            self.refresh_models()

    def current_model_id(self) -> str | None:
        # Our own list, not currentData(): on Python 3.11, PySide6 6.12's currentData() of an empty
        # combo returns None one reference short, and polling it crashes the interpreter (seen here).
        i = self.model_combo.currentIndex()
        return self._model_ids[i] if 0 <= i < len(self._model_ids) else None

    def current_record(self):
        mid = self.current_model_id()
        return self._records.get(mid) if mid else None

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
        if rec is None:
            self.badge_label.setText("")
            return
        badge = self._badges.get(rec.id)
        if badge:
            self.badge_label.setText(f"Fit: <b>{badge[0]}</b>" + (f" — {badge[1]}" if badge[1] else ""))
        else:
            self.badge_label.setText("Fit: checking…" if self.ctx.hardware is None else "")

    def _spec_for(self, rec):
        from desktop_app.engines.diffusion.protocol import ModelSpec

        return ModelSpec.for_record(rec, allow_pickle=bool(self.ctx.settings.get("allow_pickle")))

    @Slot(int)
    def _on_model_activated(self, _i: int) -> None:
        """The user chose a model: load it now in the engine (first time: the child starts)."""
        rec = self.current_record()
        if rec is None or self._shut_down or self.busy:
            return
        if self._load_job is not None:
            self.image_thread().cancel(self._load_job)
        self.status_label.setText(f"Loading {rec.display_name}…")
        self.progress.setRange(0, 0)  # busy indicator
        self._load_job = self._submit_engine_job(jobs.load_job(self._spec_for(rec), self.engine_provider),
                                                 "Loading the image model", gen=False)
        self._update_actions()

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
    def _on_generate_clicked(self) -> None:
        self.generate()

    def generate(self) -> JobHandle | None:
        """Start a generation from the panel's settings; returns the job id (None if refused)."""
        if self.busy or self._shut_down:
            return None
        p, errs = self.build_request_parts()
        if errs:
            self.show_error("invalid_request", "\n".join(errs))
            return None
        self._on_banner_dismiss()
        rec = self.current_record()
        spec = self._spec_for(rec)
        init = self.canvas.image().copy() if p["mode"] != "txt2img" else None
        mask = self.canvas.mask_image() if p["mode"] == "inpaint" else None
        provider = self.engine_provider

        def job(state, token):
            from desktop_app.engines.diffusion.protocol import GenerateRequest, LoraSpec

            req = GenerateRequest(
                model=spec, prompt=p["prompt"], negative=p["negative"], mode=p["mode"], steps=p["steps"],
                guidance=p["guidance"], width=p["width"], height=p["height"], seed=p["seed"], batch=p["batch"],
                scheduler=p["scheduler"], strength=p["strength"],
                loras=[LoraSpec(x["path"], x["weight"]) for x in p["loras"]],
                init_image=qimage_to_png(init) if init is not None else None,
                mask=qimage_to_png(mask) if mask is not None else None,
            )
            return jobs.generate_job(req, provider)(state, token)

        if self._load_job is not None:
            self.image_thread().cancel(self._load_job)
        self._gen_job = self._submit_engine_job(job, "The image generation", gen=True)
        self._total_images = p["batch"]
        self._results_this_job = 0
        self._job_error = False
        self.progress.setRange(0, p["steps"])
        self.progress.setValue(0)
        self.progress.setFormat("Starting…")
        self.status_label.setText(f"Generating with {rec.display_name}…")
        self.view_tabs.setCurrentWidget(self.preview)
        self._update_actions()
        return self._gen_job

    @Slot()
    def _on_cancel_clicked(self) -> None:
        self.cancel()

    def cancel(self) -> None:
        if self._gen_job is not None and self._thread is not None:
            self._thread.cancel(self._gen_job)
            self.status_label.setText("Cancelling…")
            self.cancel_button.setEnabled(False)
        elif self._post_job is not None and self._thread is not None:
            self._thread.cancel(self._post_job)

    # ------------------------------------------------------------------------------ job events
    def _on_engine_item(self, item) -> None:
        if self._shut_down:
            return
        if isinstance(item, E.Progress):
            self._pending_progress = item
            self._schedule_flush()
        elif isinstance(item, E.Preview):
            self._pending_preview = item
            self._schedule_flush()
        elif isinstance(item, E.Result):
            self._results_this_job += 1
            self.gallery_model.prepend(Path(item.path), item.params, item.image)
            self._pending_preview = None
            self.preview.set_image(item.image, f"seed {item.params.get('seed')} · "
                                               f"{item.image.width()}×{item.image.height()}")
            self.result_added.emit(str(item.path))
        elif isinstance(item, E.Loaded):
            self._on_engine_loaded(item.data)
        elif isinstance(item, E.Notice):
            self.status_label.setText(item.message)
            self.ctx.status_message.emit(item.message)
        elif isinstance(item, E.Status):
            self.status_label.setText(item.text)
        elif isinstance(item, E.EngineError):
            self._handle_engine_error(item.kind, item.message)

    def _schedule_flush(self) -> None:
        self._flush_timer.poke()

    @Slot()
    def _on_flush(self) -> None:
        """Coalesced UI update: the latest progress numbers and the latest preview only."""
        item, self._pending_progress = self._pending_progress, None
        if item is not None and self._gen_job is not None:
            step, total, it_s, index, batch = item.step, item.total, item.it_s, item.image_index, item.batch
            if self.progress.maximum() != total:
                self.progress.setRange(0, max(1, total))
            self.progress.setValue(step)
            speed = f"{it_s:.2f} it/s" if it_s else ""
            img = f" · image {index + 1}/{batch}" if batch and batch > 1 else ""
            self.progress.setFormat(f"Step {step}/{total}" + (f" · {speed}" if speed else "") + img)
        prev, self._pending_preview = self._pending_preview, None
        if prev is not None and self._gen_job is not None:
            self.preview.set_image(prev.image, f"Preview · step {prev.step}/{prev.total}")
            self.preview_shown.emit(prev.step)

    def _on_engine_loaded(self, data: dict) -> None:
        self._loaded_path = data.get("model")
        rec = self.current_record()
        name = rec.display_name if rec else Path(str(data.get("model", ""))).name
        where = data.get("placement_text") or f"{data.get('device', 'cpu')}"
        self.ctx.set_loaded("image", f"{name} ({data.get('device', 'cpu')}, {data.get('dtype', '')})")
        self.params.set_max_size(data.get("max_size"))
        self.params.set_model_limits(data.get("schedulers"), data.get("size_multiple"))
        native = data.get("native_size")
        if native and native != self._loaded_native:
            self._loaded_native = native
            if not self.busy:
                self.params.width_box.setValue(int(native))
                self.params.height_box.setValue(int(native))
        self.status_label.setText(f"Loaded {name} {where} in {data.get('seconds', 0):.1f} s.")
        self.model_loaded.emit(data)

    def _handle_engine_error(self, kind: str, message: str) -> None:
        self.last_error = (kind, message)
        self._job_error = True
        if kind in ("crashed", "oom"):
            self.ctx.set_loaded("image", None)
            self._loaded_path = None
            self._loaded_native = None
        self.show_error(kind, message)

    def _on_load_done(self, _result) -> None:
        self._load_job = None
        if self._gen_job is None:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("Ready")
        self._update_actions()

    def _on_gen_done(self, _result) -> None:
        self._on_flush()
        self._gen_job = None
        if not self._job_error and self._results_this_job:
            self.progress.setValue(self.progress.maximum())
            self.progress.setFormat(f"Done · {self._results_this_job} image(s)")
            self.status_label.setText(f"Done: {self._results_this_job} image(s) saved to the gallery.")
            self.generation_finished.emit("done")
        else:
            self.progress.setFormat("Failed")
            self.generation_finished.emit("error")
        self._update_actions()

    def _on_engine_failed(self, exc, was_gen: bool) -> None:
        if was_gen:
            self._gen_job = None
        else:
            self._load_job = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Failed")
        self._handle_engine_error("internal", str(exc) or type(exc).__name__)
        if was_gen:
            self.generation_finished.emit("error")
        self._update_actions()

    def _on_load_cancelled(self) -> None:
        self._load_job = None
        if self._gen_job is None:
            self.progress.setRange(0, 1)
        self._update_actions()

    def _on_gen_cancelled(self) -> None:
        self._gen_job = None
        self._pending_preview = self._pending_progress = None
        self.progress.setFormat(f"Cancelled at step {self.progress.value()}/{self.progress.maximum()}")
        self.status_label.setText("Cancelled (nothing was decoded).")
        self._update_actions()
        self.generation_finished.emit("cancelled")

    # ------------------------------------------------------------------------------ errors
    def show_error(self, kind: str, message: str) -> None:
        self.last_error = (kind, message)
        prefix = {"crashed": "The image engine stopped. ", "oom": "Out of memory. ",
                  "invalid_request": "", "model_format": "Model problem: "}.get(kind, "")
        self.banner_label.setText(prefix + message)
        self.restart_button.setVisible(kind in ("crashed", "oom", "internal"))
        self.banner.setVisible(True)
        self.status_label.setText("See the message above.")

    @Slot()
    def _on_banner_dismiss(self) -> None:
        self.banner.setVisible(False)
        self.last_error = None

    @Slot()
    def _on_restart_clicked(self) -> None:
        self.restart_engine()

    def restart_engine(self) -> JobHandle | None:
        if self.busy or self._shut_down:
            return None
        self._on_banner_dismiss()
        self.status_label.setText("Restarting the image engine…")
        self.ctx.set_loaded("image", None)
        self._loaded_path = None
        self._loaded_native = None
        self._load_job = self._submit_engine_job(jobs.restart_job(self.engine_provider),
                                                 "Restarting the image engine", gen=False)
        rec = self.current_record()
        if rec is not None:  # load the model again in the fresh process
            self._load_job = self._submit_engine_job(jobs.load_job(self._spec_for(rec), self.engine_provider),
                                                     "Loading the image model", gen=False)
        return self._load_job

    # ------------------------------------------------------------------------------ mode / canvas
    @Slot(str)
    def _on_mode_changed(self, mode: str) -> None:
        inpaint = mode == "inpaint"
        self.canvas.mask_enabled = inpaint
        self.canvas.placeholder = (
            "Text to image needs no init image." if mode == "txt2img" else
            "No image yet: send one from the gallery, drop a file here, or open one.")
        for w in (self.brush_slider, self.brush_label, self.erase_button, self.undo_button, self.clear_button):
            w.setEnabled(inpaint)
        self.view_tabs.setTabEnabled(1, mode != "txt2img")
        if mode != "txt2img" and not self.busy:
            self.view_tabs.setCurrentIndex(1)
        elif mode == "txt2img":
            self.view_tabs.setCurrentIndex(0)
        self.canvas.update()

    @Slot(int)
    def _on_brush_changed(self, v: int) -> None:
        self.canvas.set_brush_size(v)
        self.brush_label.setText(f"Brush {v} px")

    @Slot(bool)
    def _on_erase_toggled(self, on: bool) -> None:
        self.canvas.set_erase_mode(on)

    @Slot()
    def _on_undo_mask(self) -> None:
        self.canvas.undo()

    @Slot()
    def _on_mask_changed(self) -> None:
        self.undo_button.setEnabled(self.canvas.mask_enabled and self.canvas.can_undo())

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
        self.ctx.background.run(scan_images, on_success=self._on_gallery_scanned)

    @Slot(object)
    def _on_gallery_scanned(self, paths) -> None:
        if not self._shut_down:
            self.gallery_model.set_paths(paths)
            self._update_actions()

    def select_gallery_row(self, row: int) -> None:
        from PySide6.QtCore import QItemSelectionModel

        self.gallery.selectionModel().setCurrentIndex(
            self.gallery_model.index(row), QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def _selected_items(self):
        return [self.gallery_model.item(r) for r in self.gallery.selected_rows()]

    def _one(self):
        items = self._selected_items()
        return items[0] if items else None

    @Slot()
    def _on_gallery_selection(self, *_a) -> None:
        self._update_actions()

    def _update_actions(self) -> None:
        n = len(self.gallery.selected_rows()) if hasattr(self, "gallery") else 0
        one = n == 1
        for a in (self.act_open, self.act_copy, self.act_save, self.act_reuse, self.act_img2img, self.act_inpaint):
            a.setEnabled(one)
        self.act_delete.setEnabled(n >= 1)
        post_busy = self._post_job is not None
        for act, task, what in ((self.act_upscale, "upscale", "an upscaling (super-resolution)"),
                                (self.act_removebg, "background_removal", "a background-removal")):
            have = bool(self._post_models.get(task))
            act.setEnabled(one and have and not post_busy)
            act.setToolTip(act.text() + (" with " + self._post_models[task][0].display_name if have else
                                         f": install {what} model in the Models tab first"))
        it = self._one()
        src = (it.params or {}).get("source_image") if it else None
        self.act_compare.setEnabled(bool(one and src))
        busy = self.busy
        self.generate_button.setEnabled(not busy and not self._shut_down)
        self.cancel_button.setEnabled(busy or post_busy)
        self.model_combo.setEnabled(not busy)

    @Slot(object, object)
    def _on_gallery_menu(self, menu, _rows) -> None:
        for a in (self.act_open, self.act_copy, self.act_save, None, self.act_reuse, self.act_img2img,
                  self.act_inpaint, None, self.act_upscale, self.act_removebg, self.act_compare, None, self.act_delete):
            if a is None:
                menu.addSeparator()
            else:
                menu.addAction(a)

    @Slot(int)
    def _on_gallery_activated(self, row: int) -> None:
        self.open_large(self.gallery_model.item(row).path)

    @Slot()
    def _on_open_large(self) -> None:
        it = self._one()
        if it:
            self.open_large(it.path)

    def open_large(self, path: Path) -> QDialog:
        dlg = QDialog(self)
        dlg.setObjectName("studioOpenLarge")
        dlg.setWindowTitle(Path(path).name)
        dlg.setAccessibleName(f"Image {Path(path).name}")
        v = QVBoxLayout(dlg)
        view = ImageView()
        view.set_image(QImage(str(path)))
        v.addWidget(view, 1)
        info = QLabel(self._params_summary(self.gallery_model.item(self.gallery_model.row_of(path)).params
                                           if self.gallery_model.row_of(path) >= 0 else None))
        info.setWordWrap(True)
        info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(info)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        box.rejected.connect(dlg.reject)
        v.addWidget(box)
        dlg.resize(900, 800)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        return dlg

    @staticmethod
    def _params_summary(p: dict | None) -> str:
        if not p:
            return "No parameters stored in this image."
        parts = [f"{k}: {p[k]}" for k in ("model", "mode", "steps", "guidance", "scheduler", "seed", "width", "height",
                                           "strength", "operation") if p.get(k) not in (None, "")]
        return (p.get("prompt") or "") + "\n" + ", ".join(parts)

    @Slot()
    def _on_copy(self) -> None:
        it = self._one()
        if it:
            QGuiApplication.clipboard().setImage(QImage(str(it.path)))
            self.status_label.setText(f"Copied {it.path.name} to the clipboard.")

    @Slot()
    def _on_save_as(self) -> None:
        it = self._one()
        if not it:
            return
        f, _ = QFileDialog.getSaveFileName(self, "Save image as", str(Path.home() / it.path.name), "PNG image (*.png)")
        if f:
            self.save_as(it.path, Path(f))

    def save_as(self, src: Path, dest: Path) -> None:
        if dest.suffix.lower() != ".png":
            dest = dest.with_suffix(".png")
        try:
            shutil.copyfile(src, dest)  # a copy keeps the metadata chunks
            self.status_label.setText(f"Saved {dest}.")
        except OSError as exc:
            self.show_error("internal", f"Could not save {dest}: {exc}")

    @Slot()
    def _on_delete_clicked(self) -> None:
        rows = self.gallery.selected_rows()
        if not rows:
            return
        ans = QMessageBox.question(self, "Delete images", f"Delete {len(rows)} image file(s) from the gallery?")
        if ans == QMessageBox.StandardButton.Yes:
            self.delete_rows(rows)

    def delete_rows(self, rows: list[int]) -> None:
        for r in sorted(rows, reverse=True):
            it = self.gallery_model.item(r)
            try:
                it.path.unlink(missing_ok=True)
            except OSError as exc:
                self.show_error("internal", f"Could not delete {it.path}: {exc}")
                continue
            self.gallery_model.remove_row(r)
        self._update_actions()

    @Slot()
    def _on_reuse(self) -> None:
        it = self._one()
        if it:
            self.reuse_parameters(it.params)

    def reuse_parameters(self, params: dict | None, source: str = "gallery") -> list[str]:
        if not params:
            self.show_error("invalid_request", "This image carries no generation parameters.")
            return []
        applied = self.params.set_params(params)
        mp = params.get("model_path")
        if mp:
            for mid, rec in self._records.items():
                if str(rec.path) == str(mp):
                    self.select_model(mid, load=False)
                    break
        self.status_label.setText(f"Parameters restored from {source} (seed {params.get('seed', 'random')}).")
        self.params_restored.emit(params)
        return applied

    @Slot()
    def _on_send_img2img(self) -> None:
        it = self._one()
        if it:
            self.set_init_image(QImage(str(it.path)), "img2img")

    @Slot()
    def _on_send_inpaint(self) -> None:
        it = self._one()
        if it:
            self.set_init_image(QImage(str(it.path)), "inpaint")

    # ------------------------------------------------------------------------------ post-processing
    @Slot()
    def _on_upscale(self) -> None:
        self.postprocess("upscale")

    @Slot()
    def _on_remove_bg(self) -> None:
        self.postprocess("remove-bg")

    def postprocess(self, op: str, model_id: str | None = None) -> JobHandle | None:
        from desktop_app.ui.studio.postprocess import OPERATIONS, postprocess_job

        it = self._one()
        task = OPERATIONS[op][0]
        models = self._post_models.get(task) or []
        if it is None or self._post_job is not None:
            return None
        rec = next((m for m in models if m.id == model_id), None) if model_id else (models[0] if models else None)
        if rec is None:
            self.show_error("model_format", f"No {task.replace('_', ' ')} model is installed: add one in the Models tab.")
            return None
        out = new_image_path("upscaled" if op == "upscale" else "cutout")
        self._post_error = False
        self._post_job = watch(self.image_thread().submit(postprocess_job(
            op, it.path, out, rec.path, rec.id, it.params, self.engine_provider,
            allow_pickle=bool(self.ctx.settings.get("allow_pickle"))), OPERATIONS[op][1]),
            lambda h: h is self._post_job, progress=self._on_post_yielded, succeeded=self._on_post_finished,
            failed=self._on_post_failed, cancelled=self._on_post_cancelled)
        self.progress.setRange(0, 0)
        self.progress.setFormat(OPERATIONS[op][1].replace("Upscaled", "Upscaling").replace(
            "Background removed", "Removing background") + "…")
        self.status_label.setText(f"{self.progress.format()} ({it.path.name})")
        self._update_actions()
        return self._post_job

    def _on_post_yielded(self, item) -> None:
        if self._shut_down:
            return
        if isinstance(item, E.Progress):
            if item.total:
                self.progress.setRange(0, item.total)
                self.progress.setValue(item.step)
            self.progress.setFormat(item.text or "%v / %m")
        elif isinstance(item, E.Notice):
            self.status_label.setText(item.message)
        elif isinstance(item, E.EngineError):
            self._post_error = True
            self.show_error(item.kind, item.message)
        elif isinstance(item, E.Result):
            self.gallery_model.prepend(Path(item.path), item.params, item.image)
            self.preview.set_image(item.image, f"{item.params.get('operation')} · "
                                               f"{item.image.width()}×{item.image.height()}")
            self.view_tabs.setCurrentWidget(self.preview)
            self.select_gallery_row(0)
            self.result_added.emit(str(item.path))

    def _on_post_finished(self, _result) -> None:
        self._post_job = None
        self.progress.setRange(0, 1)
        if self._post_error:
            self.progress.setValue(0)
            self.progress.setFormat("Failed")
        else:
            self.progress.setValue(1)
            self.progress.setFormat("Done")
            self.status_label.setText("Done: the result is first in the gallery (Before / after compares it).")
        self._update_actions()

    def _on_post_failed(self, exc) -> None:
        self._post_job = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Failed")
        self.show_error("internal", str(exc))
        self._update_actions()

    def _on_post_cancelled(self) -> None:
        self._post_job = None
        self.progress.setRange(0, 1)
        self.progress.setFormat("Cancelled")
        self._update_actions()

    @Slot()
    def _on_compare(self) -> None:
        it = self._one()
        src = (it.params or {}).get("source_image") if it else None
        if src:
            self.compare(Path(src), it.path)

    def compare(self, before: Path, after: Path) -> QDialog:
        dlg = QDialog(self)
        dlg.setObjectName("studioCompare")
        dlg.setWindowTitle(f"Before / after — {after.name}")
        dlg.setAccessibleName("Before and after")
        v = QVBoxLayout(dlg)
        view = CompareView(QImage(str(before)), QImage(str(after)))
        v.addWidget(view, 1)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        box.rejected.connect(dlg.reject)
        v.addWidget(box)
        dlg.resize(900, 800)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.compare_view = view
        dlg.open()
        return dlg

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
            if url.isLocalFile() and Path(url.toLocalFile()).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
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

