"""Action icons from the bundled Lucide set (resources/icons/lucide, ISC licence), drawn in the
palette's text colour so that they follow the light and dark themes. ``icon(name)`` is cached per
colour; ``themed(widget_or_action, name)`` sets one and keeps it in step with theme changes."""

from __future__ import annotations

from functools import lru_cache

from PySide6.QtCore import QByteArray, QEvent, QObject, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QImage, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

from desktop_app.resources import resource

SIZES = (16, 20, 24, 32)


def _colour(disabled: bool = False) -> str:
    pal = QGuiApplication.palette()
    group = QPalette.ColorGroup.Disabled if disabled else QPalette.ColorGroup.Active
    return pal.color(group, QPalette.ColorRole.ButtonText).name()


@lru_cache(maxsize=256)
def _icon(name: str, colour: str, disabled_colour: str) -> QIcon:
    path = resource("icons", "lucide", f"{name}.svg")
    svg = path.read_text("utf-8") if path.is_file() else ""
    out = QIcon()
    if not svg:
        return out
    for mode, col in ((QIcon.Mode.Normal, colour), (QIcon.Mode.Disabled, disabled_colour)):
        renderer = QSvgRenderer(QByteArray(svg.replace("currentColor", col).encode("utf-8")))
        for size in SIZES:
            img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
            img.fill(Qt.GlobalColor.transparent)
            p = QPainter(img)
            renderer.render(p, QRectF(0, 0, size, size))
            p.end()
            out.addPixmap(QPixmap.fromImage(img), mode)
    return out


def icon(name: str) -> QIcon:
    """The Lucide icon ``name`` in the current theme's colours (an empty icon if it is not bundled)."""
    return _icon(name, _colour(), _colour(disabled=True))


class _Follower(QObject):
    """Re-draws the icons it was given when the application's palette changes (View › Theme)."""

    def __init__(self) -> None:
        super().__init__(QGuiApplication.instance())
        self.targets: dict[int, tuple] = {}  # id(target): (target, name); a target re-themed replaces its entry
        QGuiApplication.instance().installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.ApplicationPaletteChange and obj is QGuiApplication.instance():
            for key, (target, name) in list(self.targets.items()):
                try:
                    target.setIcon(icon(name))
                except RuntimeError:  # the widget or action is gone
                    del self.targets[key]
        return False


_follower: _Follower | None = None


def themed(target, name: str):
    """Give ``target`` (a button or an action) the icon ``name``, and keep it in the theme's colour."""
    global _follower
    target.setIcon(icon(name))
    if _follower is None:
        _follower = _Follower()
    _follower.targets[id(target)] = (target, name)
    return target


# Every action's icon, by the object name the views give it (one table, not a call per view).
ACTION_ICONS = {
    "chatSend": "send", "chatNew": "message-square-plus", "chatPrivate": "eye-off", "chatExport": "upload",
    "chatParamsToggle": "sliders-horizontal",
    "studioGenerate": "wand-sparkles", "studioCancel": "circle-stop", "studioOpenInit": "folder-open",
    "studioErase": "eraser", "studioUndoMask": "undo-2", "studioClearMask": "x",
    "actOpen": "maximize-2", "actCopy": "copy", "actSave": "save", "actDelete": "trash-2", "actUndoDelete": "undo-2",
    "actReuse": "refresh-cw", "actImg2img": "image", "actInpaint": "pencil", "actUpscale": "scan-search",
    "actRemoveBg": "square", "actCompare": "columns-2",
    "catalogDownload": "download", "hubDownload": "download", "hubSearch": "search", "modelsSettings": "settings",
    "libraryImportFile": "folder-open", "libraryImportFolder": "folder-open", "libraryImportPack": "package",
    "libraryExportPack": "package", "libraryDelete": "trash-2", "libraryOpenFolder": "folder-open",
    "welcomeChat": "play", "welcomeImport": "package", "welcomeMirror": "settings",
}


def decorate(root) -> int:
    """Give every button and action under ``root`` that has an entry in ACTION_ICONS its icon;
    returns how many were given one."""
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QAbstractButton, QToolButton

    n = 0
    for kind in (QAbstractButton, QAction):
        for obj in root.findChildren(kind):
            name = ACTION_ICONS.get(obj.objectName())
            if name:
                themed(obj, name)
                if isinstance(obj, QToolButton) and obj.text():  # a tool button keeps its word too
                    obj.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
                n += 1
    return n
