"""The Image Studio's gallery panel: the grid of saved images, its toolbar and context menu (open,
copy, save as, delete, reuse parameters, send to img2img / inpaint, upscale, remove background,
before / after), and the two dialogs it opens. It does the file work that needs no engine and asks
the tab for the rest:

  reuse_requested(dict)          send_requested(str path, str mode)     postprocess_requested(str op)
  status(str)                    error(str kind, str message)           deleted(list of Path)

``PreviewFollower`` keeps the Studio's preview on the truth: the image clicked in the gallery is the
one shown (and the one the toolbar acts on), a deleted image leaves the preview.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QObject, QSize, Qt, Signal, Slot
from PySide6.QtGui import QAction, QGuiApplication, QImage, QKeySequence
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFileDialog, QLabel, QToolBar, QVBoxLayout, QWidget,
)

from desktop_app.ui.studio.gallery import GalleryModel, GalleryView, scan_images, trash_dir
from desktop_app.ui.studio.image_view import CompareView, ImageView
from desktop_app.ui.widgets.named import named


def params_summary(p: dict | None) -> str:
    if not p:
        return "No parameters stored in this image."
    parts = [f"{k}: {p[k]}" for k in ("model", "mode", "steps", "guidance", "scheduler", "seed", "width", "height",
                                       "strength", "operation") if p.get(k) not in (None, "")]
    return (p.get("prompt") or "") + "\n" + ", ".join(parts)


def _dialog(parent: QWidget, name: str, title: str, accessible: str, body: QWidget, info: QWidget | None = None):
    dlg = QDialog(parent)
    dlg.setObjectName(name)
    dlg.setWindowTitle(title)
    dlg.setAccessibleName(accessible)
    v = QVBoxLayout(dlg)
    v.addWidget(body, 1)
    if info is not None:
        v.addWidget(info)
    box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    box.rejected.connect(dlg.reject)
    v.addWidget(box)
    dlg.resize(900, 800)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    return dlg


class GalleryPanel(QWidget):
    reuse_requested = Signal(object)
    send_requested = Signal(str, str)
    postprocess_requested = Signal(str)
    status = Signal(str)
    error = Signal(str, str)
    deleted = Signal(object)  # the paths of the images whose files were deleted

    def __init__(self, background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.background = background
        gv = QVBoxLayout(self)
        gv.setContentsMargins(0, 0, 0, 0)
        self.gallery_model = GalleryModel(background, self)
        self.gallery = GalleryView()
        self.gallery.setModel(self.gallery_model)
        self.gallery.context_menu_requested.connect(self._on_menu)
        self.gallery.activated_row.connect(lambda row: self.open_large(self.gallery_model.item(row).path))
        self.gallery.selectionModel().selectionChanged.connect(lambda *_a: self.update_actions())
        self.gallery_bar = named(QToolBar(), "studioGalleryBar", "Gallery actions")
        self.gallery_bar2 = named(QToolBar(), "studioGalleryBar2", "Post-processing actions")
        for bar in (self.gallery_bar, self.gallery_bar2):  # icon and word: narrow enough for 1000 px
            bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            bar.setIconSize(QSize(18, 18))
        self._make_actions()
        gv.addWidget(self.gallery_bar)
        gv.addWidget(self.gallery_bar2)
        gv.addWidget(self.gallery, 1)
        self.post_models: dict[str, list] = {}
        self.post_busy = False
        self._undo: list = []  # (file, where it waits in the trash, params) of the last delete
        self.update_actions()

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

        def one(fn):  # an action on the one selected image
            return lambda: (lambda it: it and fn(it))(self.selected_item())

        self.act_open = act("actOpen", "Open", one(lambda it: self.open_large(it.path)), "Open the image large")
        self.act_copy = act("actCopy", "Copy", one(self._copy), "Copy the image to the clipboard",
                            QKeySequence.StandardKey.Copy)
        self.act_save = act("actSave", "Save as…", one(self._ask_save_as), "Save a copy of the image")
        self.act_delete = act("actDelete", "Delete", self._ask_delete,
                              "Delete the image (Undo delete brings it back until Atelier closes)",
                              QKeySequence.StandardKey.Delete)
        self.act_undo = act("actUndoDelete", "Undo delete", self.undo_delete, "Bring back the images just deleted",
                            QKeySequence.StandardKey.Undo)
        self.act_undo.setEnabled(False)
        self.act_reuse = act("actReuse", "Reuse parameters", one(lambda it: self.reuse_requested.emit(it.params)),
                             "Put this image's prompt, seed and settings back")
        self.act_img2img = act("actImg2img", "→ Img2img", one(lambda it: self.send_requested.emit(str(it.path),
                                                                                                   "img2img")),
                               "Use as the init image")
        self.act_inpaint = act("actInpaint", "→ Inpaint", one(lambda it: self.send_requested.emit(str(it.path),
                                                                                                   "inpaint")),
                               "Use as the image to inpaint")
        self.act_upscale = act("actUpscale", "Upscale", lambda: self.postprocess_requested.emit("upscale"),
                               "Super-resolution with an upscaling model")
        self.act_removebg = act("actRemoveBg", "Remove BG", lambda: self.postprocess_requested.emit("remove-bg"),
                                "Cut out the subject")
        self.act_compare = act("actCompare", "Before / after", one(self._compare_selected),
                               "Compare with the image it was made from")
        # Two rows, so that every action stays in sight in a narrow window (a toolbar hides what does
        # not fit behind an overflow button): the image's file and reuse actions; then post-processing.
        bar, separators = self.gallery_bar, 0
        for a in self._menu_order(toolbar=True):
            if a is None:
                separators += 1
                if separators == 2:
                    bar = self.gallery_bar2
                else:
                    bar.addSeparator()
            else:
                bar.addAction(a)
        for tb in (self.gallery_bar, self.gallery_bar2):
            for a in tb.actions():
                w = tb.widgetForAction(a)
                if w is not None and a.text():
                    w.setAccessibleName(a.toolTip().split(":")[0] if a.text() != a.toolTip() else a.text())

    def _menu_order(self, toolbar: bool = False) -> list:
        if toolbar:
            return [self.act_open, self.act_copy, self.act_save, self.act_delete, self.act_undo, None, self.act_reuse,
                    self.act_img2img, self.act_inpaint, None, self.act_upscale, self.act_removebg, self.act_compare]
        return [self.act_open, self.act_copy, self.act_save, None, self.act_reuse, self.act_img2img,
                self.act_inpaint, None, self.act_upscale, self.act_removebg, self.act_compare, None, self.act_delete]

    @Slot(object, object)
    def _on_menu(self, menu, _rows) -> None:
        for a in self._menu_order():
            if a is None:
                menu.addSeparator()
            else:
                menu.addAction(a)

    # ------------------------------------------------------------------ selection
    def refresh(self) -> None:
        self.background.run(scan_images, on_success=self._on_scanned)

    def _on_scanned(self, paths) -> None:
        self.gallery_model.set_paths(paths)
        self.update_actions()

    def select_row(self, row: int) -> None:
        self.gallery.selectionModel().setCurrentIndex(
            self.gallery_model.index(row), QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def selected_item(self):
        rows = self.gallery.selected_rows()
        return self.gallery_model.item(rows[0]) if rows else None

    def update_actions(self, post_models: dict | None = None, post_busy: bool | None = None) -> None:
        if post_models is not None:
            self.post_models = post_models
        if post_busy is not None:
            self.post_busy = post_busy
        n = len(self.gallery.selected_rows())
        one = n == 1
        for a in (self.act_open, self.act_copy, self.act_save, self.act_reuse, self.act_img2img, self.act_inpaint):
            a.setEnabled(one)
        self.act_delete.setEnabled(n >= 1)
        for act, task, what in ((self.act_upscale, "upscale", "an upscaling (super-resolution)"),
                                (self.act_removebg, "background_removal", "a background-removal")):
            have = bool(self.post_models.get(task))
            act.setEnabled(one and have and not self.post_busy)
            act.setToolTip(act.text() + (" with " + self.post_models[task][0].display_name if have else
                                         f": install {what} model in the Models tab first"))
        it = self.selected_item()
        self.act_compare.setEnabled(bool(one and (it.params or {}).get("source_image")))

    # ------------------------------------------------------------------ file work
    def open_large(self, path: Path) -> QDialog:
        view = ImageView()
        view.set_image(QImage(str(path)))
        row = self.gallery_model.row_of(path)
        info = QLabel(params_summary(self.gallery_model.item(row).params if row >= 0 else None))
        info.setWordWrap(True)
        info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        dlg = _dialog(self, "studioOpenLarge", Path(path).name, f"Image {Path(path).name}", view, info)
        dlg.open()
        return dlg

    def compare(self, before: Path, after: Path) -> QDialog:
        view = CompareView(QImage(str(before)), QImage(str(after)))
        dlg = _dialog(self, "studioCompare", f"Before / after — {after.name}", "Before and after", view)
        dlg.compare_view = view
        dlg.open()
        return dlg

    def _compare_selected(self, it) -> None:
        src = (it.params or {}).get("source_image")
        if src:
            self.compare(Path(src), it.path)

    def _copy(self, it) -> None:
        QGuiApplication.clipboard().setImage(QImage(str(it.path)))
        self.status.emit(f"Copied {it.path.name} to the clipboard.")

    def _ask_save_as(self, it) -> None:
        f, _ = QFileDialog.getSaveFileName(self, "Save image as", str(Path.home() / it.path.name), "PNG image (*.png)")
        if f:
            self.save_as(it.path, Path(f))

    def save_as(self, src: Path, dest: Path) -> None:
        if dest.suffix.lower() != ".png":
            dest = dest.with_suffix(".png")
        try:
            shutil.copyfile(src, dest)  # a copy keeps the metadata chunks
            self.status.emit(f"Saved {dest}.")
        except OSError as exc:
            self.error.emit("internal", f"Could not save {dest}: {exc}")

    def _ask_delete(self) -> None:
        rows = self.gallery.selected_rows()
        if rows:  # no question: Undo (Ctrl+Z) brings them back until Atelier closes
            self.delete_rows(rows)

    def delete_rows(self, rows: list[int]) -> None:
        """Move the images to the gallery's trash (emptied when Atelier closes); Undo restores them."""
        import time

        gone, batch = [], []
        trash = trash_dir() / f"{time.time():.6f}"
        for r in sorted(rows, reverse=True):
            it = self.gallery_model.item(r)
            try:
                trash.mkdir(parents=True, exist_ok=True)
                dest = trash / it.path.name
                if it.path.exists():
                    os.replace(it.path, dest)
            except OSError as exc:
                self.error.emit("internal", f"Could not delete {it.path}: {exc.strerror or exc}")
                continue
            self.gallery_model.remove_row(r)
            gone.append(it.path)
            batch.append((it.path, dest, it.params))
        self.update_actions()
        if gone:
            self._undo = batch
            self.act_undo.setEnabled(True)
            self.status.emit(f"Deleted {len(gone)} image(s). Undo delete (Ctrl+Z) brings them back.")
            self.deleted.emit(gone)

    def undo_delete(self) -> int:
        """Put the last deleted images back in the folder and the gallery."""
        restored = 0
        for path, held, params in reversed(self._undo):
            try:
                os.replace(held, path)
            except OSError as exc:
                self.error.emit("internal", f"Could not restore {path.name}: {exc.strerror or exc}")
                continue
            self.gallery_model.prepend(path, params)
            restored += 1
        self._undo = []
        self.act_undo.setEnabled(False)
        if restored:
            self.status.emit(f"Restored {restored} image(s).")
        return restored

    def purge_trash(self) -> None:
        """Deleted images leave for good when Atelier closes."""
        shutil.rmtree(trash_dir(), ignore_errors=True)
        self._undo = []


def purge_old_trash(before: float, _token=None) -> None:
    """What a session that did not close (a crash, a kill) left in the trash (runs in the background)."""
    d = trash_dir()
    for batch in (d.iterdir() if d.is_dir() else []):
        try:
            old = float(batch.name) < before
        except ValueError:
            old = True
        if old:
            shutil.rmtree(batch, ignore_errors=True)


def batch_grid(images: list[QImage], gap: int = 8) -> QImage:
    """Several results side by side in a near-square grid (the batch view)."""
    import math

    from PySide6.QtGui import QPainter

    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    cw, ch = max(i.width() for i in images), max(i.height() for i in images)
    grid = QImage(cols * cw + (cols - 1) * gap, rows * ch + (rows - 1) * gap, QImage.Format.Format_ARGB32)
    grid.fill(QGuiApplication.palette().base().color())  # the gaps in the view's own background
    p = QPainter(grid)
    for n, img in enumerate(images):
        r, c = divmod(n, cols)
        p.drawImage(c * (cw + gap), r * (ch + gap), img)
    p.end()
    return grid


def read_params(path: Path) -> dict | None:
    from desktop_app.engines.diffusion.metadata import parse_parameters

    try:
        return parse_parameters(path)
    except Exception:  # noqa: BLE001 - an image without (or with broken) metadata still shows
        return None


def caption_of(params: dict | None, image: QImage) -> str:
    p = params or {}
    size = f"{image.width()}×{image.height()}"
    return f"{p['operation']} · {size}" if p.get("operation") else (
        f"seed {p.get('seed')} · {size}" if p.get("seed") is not None else size)


class PreviewFollower(QObject):
    """The preview shows the gallery's selected image (read off the GUI thread); results and step
    previews go through ``show``; a deleted image is cleared from the preview."""

    def __init__(self, panel: GalleryPanel, preview: ImageView, background, reveal=None) -> None:
        super().__init__(panel)
        self.panel, self.preview, self.background = panel, preview, background
        self.reveal = reveal  # brings the preview to the front when a picked image is shown
        self.path: Path | None = None  # the gallery file the preview shows (None: a step preview or nothing)
        self._batch: list[QImage] = []  # this generation's results so far
        panel.gallery.selectionModel().selectionChanged.connect(self._on_selection)
        panel.deleted.connect(self._on_deleted)

    def show(self, image: QImage | None, caption: str, path: Path | None = None) -> None:
        self.path = path
        self.preview.set_image(image, caption)

    def result(self, image: QImage, caption: str, path: Path, batch: bool = False) -> None:
        """A new result: shown at once; one of a batch waits for ``end_batch`` to join the grid."""
        self.show(image, caption, path)
        if batch:
            self._batch.append(image)

    def end_batch(self) -> None:
        """After a batch of several images: all of them as one grid in the preview; nothing is
        selected (clicking a thumbnail then shows that one)."""
        images, self._batch = self._batch, []
        if len(images) > 1:
            self.panel.gallery.clearSelection()
            self.show(batch_grid(images), f"{len(images)} images · click a thumbnail to see one large")

    @Slot()
    def _on_selection(self, *_a) -> None:
        it = self.panel.selected_item()
        if it is None or it.path == self.path:
            return
        path, known = it.path, it.params
        self.background.run(lambda _t: (QImage(str(path)), known if known is not None else read_params(path)),
                            on_success=lambda result: self._loaded(it, *result))

    def _loaded(self, it, image: QImage, params: dict | None) -> None:
        if self.panel.selected_item() is it and not image.isNull():  # still the one selected
            self.show(image, caption_of(params, image), it.path)
            if self.reveal is not None:
                self.reveal()

    @Slot(object)
    def _on_deleted(self, paths) -> None:
        if self.path is not None and self.path in paths:
            self.show(None, "")
