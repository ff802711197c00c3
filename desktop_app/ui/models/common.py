"""Small helpers shared by the Models tab views: sizes, badges, palette-derived tints, dialogs."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from desktop_app.core.errors import AtelierError, Cancelled, OfflineError


class RowTableModel(QAbstractTableModel):
    """A flat table over a Python list of row objects, with fixed column titles (COLUMNS)."""

    COLUMNS: tuple[str, ...] = ()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: list = []

    def set_rows(self, rows) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt API
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None


def human_size(n: int | None, approx: bool = False) -> str:
    """'4.92 GB', '~4.9 GB' for approximate sizes, '—' when unknown."""
    if n is None or n < 0:
        return "—"
    units = ("B", "KB", "MB", "GB", "TB")
    v = float(n)
    i = 0
    while v >= 1000 and i < len(units) - 1:
        v /= 1000
        i += 1
    if i == 0:
        text = f"{int(v)} B"
    elif v >= 100:
        text = f"{v:.0f} {units[i]}"
    elif v >= 10:
        text = f"{v:.1f} {units[i]}"
    else:
        text = f"{v:.2f} {units[i]}"
    return ("~" + text) if approx else text


def human_speed(bps: float | None) -> str:
    if not bps or bps <= 0:
        return "—"
    return human_size(int(bps)) + "/s"


def human_eta(seconds: float | None) -> str:
    if seconds is None or seconds < 0 or seconds != seconds:  # NaN
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


# Fit badges ---------------------------------------------------------------------------
# kind -> (hue in degrees, short label used when the badge object carries no text)
BADGE_KINDS = {
    "gpu": (120, "Full GPU"),
    "gpu_offload": (90, "GPU (offload)"),
    "gpu_sequential_offload": (55, "GPU (slow offload)"),
    "partial": (60, "Partial GPU"),
    "cpu": (32, "CPU only"),
    "too_large": (0, "Too large"),
    "server": (280, "Needs a server"),
    "unknown": (None, "—"),
}


def badge_kind(plan: Any) -> str:
    """Map a plan (LlmPlan/DiffusionPlan/dict/str) to one of BADGE_KINDS."""
    if plan is None:
        return "unknown"
    if isinstance(plan, str):
        p = plan
    elif isinstance(plan, dict):
        p = str(plan.get("kind") or plan.get("plan") or "")
    else:
        p = str(getattr(plan, "kind", None) or getattr(plan, "plan", "") or "")
    p = p.lower()
    if p in BADGE_KINDS:
        return p
    if "server" in p:
        return "server"
    if "too" in p:
        return "too_large"
    if "partial" in p:
        return "partial"
    if "cpu" in p:
        return "cpu"
    if "gpu" in p:
        return "gpu"
    return "unknown"


def tint(role_color: QColor, hue: int | None, strength: float = 0.28) -> QColor:
    """A colour of the given hue blended into a palette colour: readable in light and dark mode."""
    if hue is None:
        return role_color
    base = QColor(role_color)
    dark = base.lightnessF() < 0.5
    accent = QColor.fromHsvF(hue / 360.0, 0.75, 0.85 if not dark else 0.7)
    s = strength if not dark else strength + 0.1
    return QColor.fromRgbF(
        base.redF() * (1 - s) + accent.redF() * s,
        base.greenF() * (1 - s) + accent.greenF() * s,
        base.blueF() * (1 - s) + accent.blueF() * s,
    )


def badge_brush_color(kind: str, palette: QPalette | None = None) -> QColor:
    pal = palette or QApplication.palette()
    return tint(pal.color(QPalette.ColorRole.Base), BADGE_KINDS.get(kind, (None, ""))[0])


def highlight_tint(palette: QPalette | None = None) -> QColor:
    """Background of the pre-selected best quantization rows (from the palette's highlight)."""
    pal = palette or QApplication.palette()
    base = pal.color(QPalette.ColorRole.Base)
    hl = pal.color(QPalette.ColorRole.Highlight)
    s = 0.22
    return QColor.fromRgbF(
        base.redF() * (1 - s) + hl.redF() * s,
        base.greenF() * (1 - s) + hl.greenF() * s,
        base.blueF() * (1 - s) + hl.blueF() * s,
    )


def error_text(exc: BaseException) -> str:
    """A user-facing sentence for an exception (AtelierError messages are meant for users)."""
    if isinstance(exc, (AtelierError, OfflineError, Cancelled)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def licence_box(parent: QWidget | None, text: str, selectable: bool = False) -> QMessageBox:
    """The "Do you accept the licence?" question (I accept / Cancel, Cancel by default); the accept
    button is in the box's ``accept_button`` property. The caller opens it and reads the answer."""
    box = QMessageBox(QMessageBox.Icon.Question, "Licence", text, QMessageBox.StandardButton.NoButton, parent)
    box.setObjectName("licenceDialog")
    box.setAccessibleName("Accept the licence")
    if selectable:
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
    accept = box.addButton("I accept", QMessageBox.ButtonRole.AcceptRole)
    accept.setObjectName("licenceAccept")
    accept.setAccessibleName("Accept the licence")
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    cancel.setAccessibleName("Cancel")
    box.setDefaultButton(cancel)
    box.setProperty("accept_button", accept)
    return box
