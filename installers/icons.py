"""Render resources/icons/atelier.svg to the PNG sizes desktops ask for (16-512 px), into
resources/icons/atelier-<size>.png, plus ``atelier.ico`` (Windows shortcuts and the frozen .exe) and
``atelier.icns`` (the macOS .app), made from those PNGs with Pillow. Run it after changing the SVG; the PNGs are committed, so
installing needs no renderer.

    QT_QPA_PLATFORM=offscreen .venv/bin/python installers/icons.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def main() -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    icons = ROOT / "resources" / "icons"
    renderer = QSvgRenderer(str(icons / "atelier.svg"))
    for size in SIZES:
        img = QImage(size, size, QImage.Format.Format_ARGB32)
        img.fill(Qt.GlobalColor.transparent)
        painter = QPainter(img)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        assert img.save(str(icons / f"atelier-{size}.png"))
    del app
    from PIL import Image

    with Image.open(icons / "atelier-256.png") as im:
        im.save(icons / "atelier.ico", sizes=[(s, s) for s in SIZES if s <= 256])
    with Image.open(icons / "atelier-512.png") as im:
        im.save(icons / "atelier.icns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
