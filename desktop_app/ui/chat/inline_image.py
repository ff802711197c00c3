"""An image from the Studio inside a chat message (/imagine): a thumbnail button (the file is
read scaled down, at most THUMB px); its tooltip says the prompt and seed; a click opens it in the
Image Studio. A missing file (deleted from the gallery) says so instead."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImageReader, QPixmap
from PySide6.QtWidgets import QToolButton

from desktop_app.ui.widgets.named import named

THUMB = 256


def inline_image_button(image: dict, on_click) -> QToolButton:
    b = named(QToolButton(), "chatInlineImage", "Generated image: open it in the Image Studio")
    b.setAutoRaise(True)
    b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
    path = Path(str(image.get("path", "")))
    reader = QImageReader(str(path))
    size = reader.size()
    if size.isValid() and size.width() > 0:
        scale = min(1.0, THUMB / max(size.width(), size.height()))
        reader.setScaledSize(QSize(max(1, int(size.width() * scale)), max(1, int(size.height() * scale))))
    img = reader.read()
    if img.isNull():
        b.setText(f"The image {path.name} is no longer there.")
        b.setEnabled(False)
        return b
    b.setIcon(QIcon(QPixmap.fromImage(img)))
    b.setIconSize(img.size())
    seed = image.get("seed")
    b.setText(f"{path.name}" + (f" · seed {seed}" if seed is not None else ""))
    b.setToolTip(f"{image.get('prompt', '')}\n\nClick to open it in the Image Studio with its parameters.")
    b.clicked.connect(lambda _=False: on_click())
    return b
