"""The inpainting canvas: shows the init image; paint or erase a mask with a round brush; undo.

The mask is kept at the image's own resolution (white = repaint, transparent = keep) and drawn
over the image tinted with the palette's highlight colour. ``mask_png()`` exports it as a
grayscale PNG (white = repaint, black = keep), which is what the engine expects.
"""

from __future__ import annotations

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop_app.ui.studio.image_view import draw_placeholder, fit_rect

MAX_UNDO = 30


def qimage_to_png(img: QImage) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    buf.close()
    return bytes(data.data())


class MaskCanvas(QWidget):
    """Paint (left button) or erase (right button, or erase mode) a mask over an image."""

    mask_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("studioMaskCanvas")
        self.setAccessibleName("Inpainting mask canvas")
        self.setAccessibleDescription("Paint with the left mouse button to mark the area to repaint; "
                                      "right button erases. Ctrl+Z undoes a stroke.")
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self._image = QImage()
        self._mask = QImage()
        self._overlay = QImage()
        self._undo: list[QImage] = []
        self._brush = 32
        self._erase = False
        self._painting = False
        self._erasing_stroke = False
        self._last: QPointF | None = None
        self._hover: QPointF | None = None
        self.mask_enabled = True
        self.placeholder = "No image yet: send one from the gallery, drop a file here, or open one."

    # public API ------------------------------------------------------------------------------
    def set_image(self, image: QImage) -> None:
        """Show ``image`` and start with an empty mask of its size (the undo history is cleared)."""
        self._image = image.convertToFormat(QImage.Format.Format_RGB32) if not image.isNull() else QImage()
        self._mask = QImage(self._image.size(), QImage.Format.Format_ARGB32_Premultiplied)
        self._mask.fill(Qt.GlobalColor.transparent)
        self._undo.clear()
        self._refresh_overlay()
        self.mask_changed.emit()

    def image(self) -> QImage:
        return self._image

    def has_image(self) -> bool:
        return not self._image.isNull()

    def image_png(self) -> bytes | None:
        return qimage_to_png(self._image) if self.has_image() else None

    def brush_size(self) -> int:
        return self._brush

    def set_brush_size(self, px: int) -> None:
        """The brush's diameter in screen pixels (what the user sees under the pointer)."""
        self._brush = max(1, int(px))

    def brush_in_image(self) -> float:
        """The brush's diameter in image pixels at the current zoom."""
        s = self._scale()
        return max(1.0, self._brush / s) if s > 0 else float(self._brush)
        self.update()

    def erase_mode(self) -> bool:
        return self._erase

    def set_erase_mode(self, on: bool) -> None:
        self._erase = bool(on)

    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self) -> None:
        if not self._undo:
            return
        self._mask = self._undo.pop()
        self._refresh_overlay()
        self.mask_changed.emit()

    def clear_mask(self) -> None:
        if self._mask.isNull():
            return
        self._push_undo()
        self._mask.fill(Qt.GlobalColor.transparent)
        self._refresh_overlay()
        self.mask_changed.emit()

    def mask_image(self) -> QImage:
        """The mask as an 8-bit grayscale image: 255 = repaint, 0 = keep."""
        out = QImage(self._mask.size(), QImage.Format.Format_Grayscale8)
        if out.isNull():
            return out
        out.fill(Qt.GlobalColor.black)
        p = QPainter(out)
        p.drawImage(0, 0, self._mask)
        p.end()
        return out

    def mask_coverage(self) -> float:
        """Fraction of the image marked for repaint (0..1)."""
        if self._mask.isNull():
            return 0.0
        alpha = self._mask.convertToFormat(QImage.Format.Format_Alpha8)
        w, h, bpl = alpha.width(), alpha.height(), alpha.bytesPerLine()
        raw = bytes(alpha.constBits())[: bpl * h]
        marked = 0
        for y in range(h):
            row = raw[y * bpl: y * bpl + w]
            marked += w - row.count(0)
        return marked / float(w * h)

    def is_mask_empty(self) -> bool:
        return self.mask_coverage() == 0.0

    def mask_png(self) -> bytes | None:
        return qimage_to_png(self.mask_image()) if not self._mask.isNull() else None

    def set_mask(self, mask: QImage) -> None:
        """Load a grayscale mask (white = repaint), scaled to the image."""
        if not self.has_image():
            return
        self._push_undo()
        m = mask.convertToFormat(QImage.Format.Format_Grayscale8).scaled(self._image.size())
        self._mask = QImage(self._image.size(), QImage.Format.Format_ARGB32_Premultiplied)
        self._mask.fill(Qt.GlobalColor.white)
        self._mask.setAlphaChannel(m)
        self._refresh_overlay()
        self.mask_changed.emit()

    # geometry -----------------------------------------------------------------------------------
    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(512, 512)

    def _target_rect(self) -> QRectF:
        return fit_rect(self._image.width(), self._image.height(), QRectF(self.rect()))

    def _scale(self) -> float:
        r = self._target_rect()
        return r.width() / self._image.width() if not r.isEmpty() else 1.0

    def widget_to_image(self, pos: QPointF) -> QPointF:
        r = self._target_rect()
        s = self._scale()
        return QPointF((pos.x() - r.x()) / s, (pos.y() - r.y()) / s)

    def image_to_widget(self, pos: QPointF) -> QPointF:
        r = self._target_rect()
        s = self._scale()
        return QPointF(r.x() + pos.x() * s, r.y() + pos.y() * s)

    # painting -----------------------------------------------------------------------------------
    def _push_undo(self) -> None:
        self._undo.append(self._mask.copy())
        del self._undo[:-MAX_UNDO]

    def _stroke(self, a: QPointF, b: QPointF) -> None:
        p = QPainter(self._mask)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self._erasing_stroke:
            p.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear)
        width = self.brush_in_image()  # the brush is sized on screen: the same dab at any zoom
        pen = QPen(QColor(255, 255, 255), width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                   Qt.PenJoinStyle.RoundJoin)
        p.setPen(pen)
        if a == b:
            p.setBrush(QColor(255, 255, 255))
            p.setPen(Qt.PenStyle.NoPen)
            p.drawEllipse(a, width / 2, width / 2)
        else:
            p.drawLine(a, b)
        p.end()
        self._refresh_overlay()

    def _refresh_overlay(self) -> None:
        if self._mask.isNull():
            self._overlay = QImage()
        else:
            self._overlay = self._mask.copy()
            p = QPainter(self._overlay)
            p.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
            c = QColor(self.palette().color(QPalette.ColorRole.Highlight))
            c.setAlpha(140)
            p.fillRect(self._overlay.rect(), c)
            p.end()
        self.update()

    def mousePressEvent(self, ev) -> None:  # noqa: N802 - Qt API
        if not self.mask_enabled or not self.has_image():
            return super().mousePressEvent(ev)
        if ev.button() not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            return super().mousePressEvent(ev)
        self._push_undo()
        self._painting = True
        self._erasing_stroke = self._erase or ev.button() == Qt.MouseButton.RightButton
        pt = self.widget_to_image(ev.position())
        self._last = pt
        self._stroke(pt, pt)
        ev.accept()

    def mouseMoveEvent(self, ev) -> None:  # noqa: N802 - Qt API
        self._hover = ev.position()
        if self._painting and self._last is not None:
            pt = self.widget_to_image(ev.position())
            self._stroke(self._last, pt)
            self._last = pt
        else:
            self.update()

    def mouseReleaseEvent(self, ev) -> None:  # noqa: N802 - Qt API
        if self._painting:
            self._painting = False
            self._last = None
            self.mask_changed.emit()
            ev.accept()
            return
        super().mouseReleaseEvent(ev)

    def leaveEvent(self, ev) -> None:  # noqa: N802 - Qt API
        self._hover = None
        self.update()
        super().leaveEvent(ev)

    def paintEvent(self, _ev) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        if self._image.isNull():
            draw_placeholder(p, self, self.placeholder)
            return
        r = self._target_rect()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(r, self._image)
        if self.mask_enabled and not self._overlay.isNull():
            p.drawImage(r, self._overlay)
        if self.mask_enabled and self._hover is not None and r.contains(self._hover):
            rad = self._brush / 2  # screen pixels, as the slider says
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.setPen(QPen(pal.color(QPalette.ColorRole.Highlight), 1.5))
            p.drawEllipse(self._hover, rad, rad)
