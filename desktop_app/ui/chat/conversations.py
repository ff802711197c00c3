"""The conversation list: a lazy list model over the history store (paged with fetchMore).

The view asks for more rows only as the user scrolls, so the first paint reads one page (100
rows, well under a millisecond from SQLite) whether the history holds 10 or 10 000 chats.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

PAGE = 100
ConversationIdRole = Qt.ItemDataRole.UserRole + 1


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
