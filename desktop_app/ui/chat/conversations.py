"""The conversation list: a lazy list model over the history store (paged with fetchMore).

The view asks for more rows only as the user scrolls, so the first paint reads one page (100
rows, well under a millisecond from SQLite) whether the history holds 10 or 10 000 chats.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

PAGE = 100
ConversationIdRole = Qt.ItemDataRole.UserRole + 1
DetailRole = Qt.ItemDataRole.UserRole + 2  # the second line: the search snippet, else when it was last used


def _when(ts: float) -> str:
    lt, now = time.localtime(ts), time.localtime()
    if lt[:3] == now[:3]:
        return time.strftime("%H:%M", lt)
    if lt.tm_year == now.tm_year:
        return time.strftime("%d %b", lt)
    return time.strftime("%d %b %Y", lt)


class ConversationListModel(QAbstractListModel):
    def __init__(self, store=None, parent=None) -> None:
        super().__init__(parent)
        self._store = store
        self._rows: list = []
        self._search = ""
        self._exhausted = store is None
        self.pages_fetched = 0
        self._load_first(PAGE)

    # ------------------------------------------------------------------ store / search
    @property
    def store(self):
        return self._store

    def set_store(self, store) -> None:
        self.beginResetModel()
        self._store = store
        self._load_first(PAGE)
        self.endResetModel()

    def _load_first(self, n: int) -> None:
        """The first page is read at once (the view would only ask for it after a layout pass)."""
        self._rows = []
        self._exhausted = self._store is None
        if self._store is not None:
            self._rows = self._store.list_conversations(search=self._search or None, limit=n, offset=0)
            self._exhausted = len(self._rows) < n
            self.pages_fetched += 1

    def set_search(self, text: str) -> None:
        text = text.strip()
        if text == self._search:
            return
        self.beginResetModel()
        self._search = text
        self._load_first(PAGE)
        self.endResetModel()

    @property
    def search(self) -> str:
        return self._search

    def refresh(self) -> None:
        """Re-read from the top (after a new chat, a rename, a delete…), keeping as many rows."""
        want = max(PAGE, len(self._rows))
        self.beginResetModel()
        self._load_first(want)
        self.endResetModel()

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._rows)

    def canFetchMore(self, parent=QModelIndex()) -> bool:  # noqa: N802
        return not parent.isValid() and not self._exhausted

    def fetchMore(self, parent=QModelIndex()) -> None:  # noqa: N802
        if parent.isValid() or self._exhausted or self._store is None:
            return
        page = self._store.list_conversations(search=self._search or None, limit=PAGE, offset=len(self._rows))
        self.pages_fetched += 1
        if len(page) < PAGE:
            self._exhausted = True
        if not page:
            return
        first = len(self._rows)
        self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
        self._rows.extend(page)
        self.endInsertRows()

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        c = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return c.title or "Untitled chat"
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{c.title or 'Untitled chat'}\nLast message {_when(c.updated)}"
        if role == Qt.ItemDataRole.EditRole:
            return c.title
        if role == ConversationIdRole:
            return c.id
        if role == DetailRole:
            return c.snippet or _when(c.updated)
        return None

    def flags(self, index):
        f = super().flags(index)
        return f | Qt.ItemFlag.ItemIsEditable if index.isValid() else f

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        """Rename in place (F2 / double click)."""
        if role != Qt.ItemDataRole.EditRole or not index.isValid() or self._store is None:
            return False
        title = str(value).strip()
        if not title:
            return False
        c = self._rows[index.row()]
        self._store.rename(c.id, title)
        c.title = title
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole])
        return True

    # ------------------------------------------------------------------ helpers
    def conversation_at(self, row: int):
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, conversation_id: int) -> int:
        for i, c in enumerate(self._rows):
            if c.id == conversation_id:
                return i
        return -1


class ConversationDelegate(QStyledItemDelegate):
    """Two lines per chat: its title (bold when it is the one open), then the search snippet when
    the list is filtered, else when it was last used; the open chat keeps the selection colour."""

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 - Qt API
        h = option.fontMetrics.height()
        return QSize(200, 2 * h + 12)

    def paint(self, painter, option, index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        title, opt.text = opt.text, ""
        style = opt.widget.style() if opt.widget else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        pal = opt.palette
        r = opt.rect.adjusted(6, 4, -6, -4)
        fm = opt.fontMetrics
        painter.save()
        font = opt.font
        font.setBold(selected)
        painter.setFont(font)
        painter.setPen(pal.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text))
        painter.drawText(QRect(r.x(), r.y(), r.width(), fm.height()), int(Qt.AlignmentFlag.AlignLeft),
                         painter.fontMetrics().elidedText(title or "", Qt.TextElideMode.ElideRight, r.width()))
        small = opt.font
        small.setBold(False)
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.88))
        painter.setFont(small)
        if not selected:
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        detail = str(index.data(DetailRole) or "")
        painter.drawText(QRect(r.x(), r.y() + fm.height() + 2, r.width(), fm.height()),
                         int(Qt.AlignmentFlag.AlignLeft),
                         painter.fontMetrics().elidedText(detail, Qt.TextElideMode.ElideRight, r.width()))
        painter.restore()
