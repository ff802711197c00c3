"""The Image Studio's "Init image & mask" page: open an image, the inpainting canvas and its brush,
erase, undo and clear controls. ``open_requested`` asks the tab to open a file (the tab checks it
and sets the output size from it)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from desktop_app.ui.studio.mask_canvas import MaskCanvas
from desktop_app.ui.widgets.named import named


class CanvasPage(QWidget):
    open_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 4, 0, 0)
        bar = QHBoxLayout()
        self.open_image_button = named(QPushButton("Open image…"), "studioOpenInit", "Open an init image")
        self.open_image_button.clicked.connect(self.open_requested)
        bar.addWidget(self.open_image_button)
        self.brush_label = QLabel("Brush 32 px")
        self.brush_slider = named(QSlider(Qt.Orientation.Horizontal), "studioBrushSize", "Brush size")
        self.brush_slider.setRange(2, 256)
        self.brush_slider.setValue(32)
        self.brush_slider.setMaximumWidth(160)
        bar.addWidget(self.brush_label)
        bar.addWidget(self.brush_slider)
        self.erase_button = named(QPushButton("Erase"), "studioErase", "Erase mode")
        self.erase_button.setCheckable(True)
        self.erase_button.setToolTip("Erase the mask (or paint with the right mouse button)")
        self.undo_button = named(QPushButton("Undo"), "studioUndoMask", "Undo mask stroke", "Undo (Ctrl+Z)")
        self.clear_button = named(QPushButton("Clear mask"), "studioClearMask", "Clear mask")
        for b in (self.erase_button, self.undo_button, self.clear_button):
            bar.addWidget(b)
        bar.addStretch(1)
        v.addLayout(bar)
        self.canvas = MaskCanvas()
        v.addWidget(self.canvas, 1)

        self.brush_slider.valueChanged.connect(self._on_brush_changed)
        self.erase_button.toggled.connect(self.canvas.set_erase_mode)
        self.undo_button.clicked.connect(self.canvas.undo)
        self.clear_button.clicked.connect(self.canvas.clear_mask)
        self.canvas.mask_changed.connect(self._on_mask_changed)
        undo = QShortcut(QKeySequence.StandardKey.Undo, self, activated=self.canvas.undo)
        undo.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)

    def set_mode(self, mode: str) -> None:
        """The mask tools work in inpaint mode only; the placeholder says what the mode needs."""
        inpaint = mode == "inpaint"
        self.canvas.mask_enabled = inpaint
        self.canvas.placeholder = (
            "Text to image needs no init image." if mode == "txt2img" else
            "No image yet: send one from the gallery, drop a file here, or open one.")
        for w in (self.brush_slider, self.brush_label, self.erase_button, self.undo_button, self.clear_button):
            w.setEnabled(inpaint)
        self.canvas.update()

    @Slot(int)
    def _on_brush_changed(self, v: int) -> None:
        self.canvas.set_brush_size(v)
        self.brush_label.setText(f"Brush {v} px")

    @Slot()
    def _on_mask_changed(self) -> None:
        self.undo_button.setEnabled(self.canvas.mask_enabled and self.canvas.can_undo())
