"""Image views of the studio: a fit-to-widget image (live preview, open large) and a before/after
comparison with a draggable divider (upscale and background-removal results)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


def fit_rect(img_w: int, img_h: int, rect: QRectF, upscale: bool = True) -> QRectF:
    """The rectangle an img_w x img_h image takes when scaled to fit ``rect``, centred in it."""
    if img_w <= 0 or img_h <= 0:
        return QRectF()
    s = min(rect.width() / img_w, rect.height() / img_h)
    if not upscale:
        s = min(s, 1.0)
    w, h = img_w * s, img_h * s
    return QRectF(rect.x() + (rect.width() - w) / 2, rect.y() + (rect.height() - h) / 2, w, h)


def draw_placeholder(p: QPainter, widget: QWidget, text: str) -> None:
    """The empty state of an image widget: ``text`` centred and wrapped, in the placeholder colour."""
    p.setPen(widget.palette().color(QPalette.ColorRole.PlaceholderText))
    p.drawText(QRectF(widget.rect()).adjusted(20, 20, -20, -20),
               int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), text)


def _checkerboard(p: QPainter, r: QRectF, pal: QPalette) -> None:
    """Transparency shows as a checkerboard derived from the palette."""
    a = pal.color(QPalette.ColorRole.Base)
    b = a.darker(125) if a.lightness() > 128 else a.lighter(160)
    p.save()
    p.setClipRect(r)
    p.fillRect(r, a)
    n = 12
    y = int(r.top())
    row = 0
    while y < r.bottom():
        x = int(r.left()) + (n if row % 2 else 0)
        while x < r.right():
            p.fillRect(x, y, n, n, b)
            x += 2 * n
        y += n
        row += 1
    p.restore()


class ImageView(QWidget):
    """Shows one QImage scaled to fit the widget (with a checkerboard under transparency), or a placeholder."""

    def __init__(self, parent: QWidget | None = None, placeholder: str = "") -> None:
        super().__init__(parent)
        self.setObjectName("studioImageView")
        self.setAccessibleName("Image preview")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)
        self._image = QImage()
        self.placeholder = placeholder
        self.caption = ""

    def set_image(self, image: QImage | None, caption: str = "") -> None:
        self._image = image if image is not None else QImage()
        self.caption = caption
        self.update()

    def image(self) -> QImage:
        return self._image

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(512, 512)

    def paintEvent(self, _ev) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        if self._image.isNull():
            draw_placeholder(p, self, self.placeholder)
            return
        area = QRectF(self.rect()).adjusted(8, 8, -8, -8 - (18 if self.caption else 0))
        r = fit_rect(self._image.width(), self._image.height(), area)
        if self._image.hasAlphaChannel():
            _checkerboard(p, r, pal)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(r, self._image)
        if self.caption:
            p.setPen(pal.color(QPalette.ColorRole.WindowText))
            p.drawText(QRectF(0, self.height() - 22, self.width(), 20), int(Qt.AlignmentFlag.AlignCenter),
                       self.caption)


class CompareView(QWidget):
    """Before (left of the divider) and after (right); drag or use the arrow keys to move it."""

    divider_moved = Signal(float)

    def __init__(self, before: QImage, after: QImage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("studioCompareView")
        self.setAccessibleName("Before and after comparison")
        self.setAccessibleDescription("Left of the divider: before; right: after. Arrow keys move the divider.")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setMinimumSize(240, 240)
        self.before = before
        self.after = after
        self.split = 0.5

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(640, 640)

    def set_split(self, f: float) -> None:
        self.split = min(1.0, max(0.0, f))
        self.divider_moved.emit(self.split)
        self.update()

    def _rect(self) -> QRectF:
        # Both images are shown in the frame of the "after" image (the larger one when upscaled).
        ref = self.after if not self.after.isNull() else self.before
        return fit_rect(ref.width(), ref.height(), QRectF(self.rect()).adjusted(8, 8, -8, -28))

    def mousePressEvent(self, ev) -> None:  # noqa: N802 - Qt API
        self._drag(ev.position())

    def mouseMoveEvent(self, ev) -> None:  # noqa: N802 - Qt API
        if ev.buttons() & Qt.MouseButton.LeftButton:
            self._drag(ev.position())

    def _drag(self, pos: QPointF) -> None:
        r = self._rect()
        if r.width() > 0:
            self.set_split((pos.x() - r.left()) / r.width())

    def keyPressEvent(self, ev) -> None:  # noqa: N802 - Qt API
        if ev.key() == Qt.Key.Key_Left:
            self.set_split(self.split - 0.05)
        elif ev.key() == Qt.Key.Key_Right:
            self.set_split(self.split + 0.05)
        else:
            super().keyPressEvent(ev)

    def paintEvent(self, _ev) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        r = self._rect()
        if r.isEmpty():
            return
        _checkerboard(p, r, pal)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        x = r.left() + r.width() * self.split
        p.save()
        p.setClipRect(QRectF(r.left(), r.top(), x - r.left(), r.height()))
        if not self.before.isNull():
            p.drawImage(r, self.before)
        p.restore()
        p.save()
        p.setClipRect(QRectF(x, r.top(), r.right() - x, r.height()))
        if not self.after.isNull():
            p.drawImage(r, self.after)
        p.restore()
        hl = pal.color(QPalette.ColorRole.Highlight)
        p.setPen(QPen(hl, 2))
        p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        p.setBrush(QBrush(hl))
        p.drawEllipse(QPointF(x, r.center().y()), 7, 7)
        p.setPen(pal.color(QPalette.ColorRole.WindowText))
        bw = f"Before {self.before.width()}×{self.before.height()}"
        aw = f"After {self.after.width()}×{self.after.height()}"
        p.drawText(QRectF(r.left(), self.height() - 24, r.width() / 2, 20),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), bw)
        p.drawText(QRectF(r.center().x(), self.height() - 24, r.width() / 2, 20),
                   int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), aw)

