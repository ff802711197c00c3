"""Model cards: the catalog as cards (the table stays, as the list view). A card says what the
model is good at, its parameters and context, licence, the exact file and its size on disk, and how
it fits this machine in words with an expected speed (hub/picks.speed_words, from the fit plan).
The card grid shares the table's filter proxy and its selection."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QPainter, QPalette, QTextDocument
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate

CARD_W, CARD_H = 330, 156
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 2  # the table's (catalog_view.ENTRY_ROLE)


def card_html(row) -> str:
    """The card of a CatalogRow (every text from the catalog escaped: it is data, not markup)."""
    from desktop_app.hub.picks import speed_words
    from desktop_app.ui.models.common import human_size

    e, fit = row.entry, row.fit
    flags = (" <span>★ best for this machine</span>" if row.recommended else "") + (
        " ✓ installed" if row.installed else "")
    facts = [x for x in (e.params and f"{escape(e.params)} parameters",
                         e.context_length and f"context {e.context_length:,} tokens",
                         f"licence {escape(e.license or 'see the model card')}" + (" (gated)" if e.gated else ""))
             if x]
    file = escape(e.file or e.repo_id)
    size = human_size(e.size_bytes, approx=not e.size_exact) if e.size_bytes else "size unknown"
    if e.needs_server:
        where = "Needs a server: too big for a desktop."
    elif fit is None:
        where = "Fit: checking this machine…"
    elif not fit.fits:
        where = f"<b>{escape(fit.badge)}</b>: does not fit this machine."
    else:
        where = f"<b>{escape(fit.badge)}</b>: {escape(speed_words(e, fit))}"
    return (f"<b>{escape(e.family)}</b> {escape(e.quantization)}{flags}<br>"
            f"<i>{escape(e.description)}</i><br>{' · '.join(facts)}<br>"
            f"<small>{file} · {size}</small><br>{where}")


class CardDelegate(QStyledItemDelegate):
    def sizeHint(self, _option, _index) -> QSize:  # noqa: N802 - Qt API
        return QSize(CARD_W, CARD_H)

    def paint(self, painter: QPainter, option, index) -> None:
        row = index.data(ENTRY_ROLE)
        if row is None:
            return
        pal = option.palette
        rect = QRectF(option.rect).adjusted(4, 4, -4, -4)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(pal.color(QPalette.ColorRole.Highlight) if selected or row.recommended
                       else pal.color(QPalette.ColorRole.Mid))
        painter.setBrush(pal.color(QPalette.ColorRole.AlternateBase if selected else QPalette.ColorRole.Base))
        painter.drawRoundedRect(rect, 6, 6)
        doc = QTextDocument()
        doc.setDefaultFont(option.font)
        doc.setDefaultStyleSheet(f"body {{ color: {pal.color(QPalette.ColorRole.Text).name()}; }}")
        doc.setHtml(f"<body>{card_html(row)}</body>")
        doc.setTextWidth(rect.width() - 16)
        painter.translate(rect.left() + 8, rect.top() + 6)
        painter.setClipRect(QRectF(0, 0, rect.width() - 16, rect.height() - 10))
        doc.drawContents(painter)
        painter.restore()


class CardView(QListView):
    """The catalog's card grid (filters and selection shared with the table)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("catalogCards")
        self.setAccessibleName("Model cards")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setGridSize(QSize(CARD_W + 8, CARD_H + 8))
        self.setSpacing(0)
        self.setWordWrap(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setItemDelegate(CardDelegate(self))
