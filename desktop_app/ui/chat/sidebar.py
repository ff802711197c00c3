"""The Chat tab's conversation list panel: new/private buttons, search, the list with its context
menu (open, rename, export, delete), the private-chat banner and "Delete all history". It only lays
out and asks; the tab (and its controller) does the work, through these signals:

  new_requested()              private_toggled(bool)        search_changed(str)  (debounced)
  open_requested(int)          rename_requested(int, str)   export_requested(str, int)
  delete_requested(int)        (after the user confirmed)   delete_all_requested() (confirmed)
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QInputDialog, QLabel, QLineEdit, QListView, QMenu, QMessageBox, QPushButton,
    QVBoxLayout, QWidget,
)

from desktop_app.ui.chat.conversations import ConversationDelegate, ConversationIdRole, ConversationListModel
from desktop_app.ui.widgets.throttle import Coalescer
from desktop_app.ui.widgets.named import named


class ConversationSidebar(QWidget):
    new_requested = Signal()
    private_toggled = Signal(bool)
    search_changed = Signal(str)
    open_requested = Signal(int)
    rename_requested = Signal(int, str)
    export_requested = Signal(str, int)
    delete_requested = Signal(int)
    delete_all_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatSidebar")
        ll = QVBoxLayout(self)
        ll.setContentsMargins(6, 6, 6, 6)
        row = QHBoxLayout()
        self.new_button = named(QPushButton("New chat"), "chatNew", "New chat", "Start a new conversation (Ctrl+N)")
        self.private_button = named(QPushButton("Private"), "chatPrivate")
        self.private_button.setCheckable(True)
        self.private_button.setAccessibleName("Private chat")
        self.private_button.setToolTip("A private chat is never written to disk and disappears when you leave it")
        row.addWidget(self.new_button, 1)
        row.addWidget(self.private_button)
        ll.addLayout(row)
        self.search_edit = named(QLineEdit(), "chatSearch", "Search conversations")
        self.search_edit.setPlaceholderText("Search chats…")
        self.search_edit.setClearButtonEnabled(True)
        ll.addWidget(self.search_edit)
        self.conv_model = ConversationListModel(None, self)
        self.conv_view = named(QListView(), "chatConversationList", "Conversations")
        self.conv_view.setModel(self.conv_model)
        self.conv_view.setItemDelegate(ConversationDelegate(self.conv_view))  # title, then snippet or date
        self.conv_view.setUniformItemSizes(True)
        self.conv_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.conv_view.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)
        self.conv_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.conv_view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.conv_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        ll.addWidget(self.conv_view, 1)
        self.private_banner = QLabel("Private chat: nothing is saved. Leave it and it is gone.")
        self.private_banner.setObjectName("chatPrivateBanner")
        self.private_banner.setWordWrap(True)
        self.private_banner.hide()
        ll.addWidget(self.private_banner)
        self.delete_all_button = named(QPushButton("Delete all history…"), "chatDeleteAll", "Delete all chat history")
        ll.addWidget(self.delete_all_button)

        self.search_timer = Coalescer(250, lambda: self.search_changed.emit(self.search_edit.text()), self,
                                      mode="debounce")
        self.new_button.clicked.connect(self.new_requested)
        self.private_button.toggled.connect(self.private_toggled)
        self.search_edit.textChanged.connect(lambda _t: self.search_timer.poke())
        self.conv_view.clicked.connect(self._on_clicked)
        self.conv_view.activated.connect(self._on_clicked)
        self.conv_view.customContextMenuRequested.connect(self._on_menu)
        self.delete_all_button.clicked.connect(self.confirm_delete_all)

    @Slot(QModelIndex)
    def _on_clicked(self, index: QModelIndex) -> None:
        cid = index.data(ConversationIdRole)
        if cid is not None:
            self.open_requested.emit(int(cid))

    @Slot(object)
    def _on_menu(self, pos) -> None:
        idx = self.conv_view.indexAt(pos)
        if not idx.isValid():
            return
        cid = int(idx.data(ConversationIdRole))
        menu = QMenu(self)
        menu.addAction("Open", lambda: self.open_requested.emit(cid))
        menu.addAction("Rename…", lambda: self._ask_rename(cid, idx.data()))
        menu.addAction("Export as Markdown…", lambda: self.export_requested.emit("md", cid))
        menu.addAction("Export as JSON…", lambda: self.export_requested.emit("json", cid))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: (self.conv_view.setCurrentIndex(idx), self.confirm_delete_selected()))
        menu.popup(self.conv_view.viewport().mapToGlobal(pos))

    def _ask_rename(self, cid: int, old: str) -> None:
        title, ok = QInputDialog.getText(self, "Rename chat", "New name:", text=old or "")
        if ok:
            self.rename_requested.emit(cid, title)

    @Slot()
    def confirm_delete_selected(self) -> None:
        idx = self.conv_view.currentIndex()
        cid = idx.data(ConversationIdRole) if idx.isValid() else None
        if cid is None:
            return
        if QMessageBox.question(self, "Delete chat", f"Delete “{idx.data()}”? This cannot be undone.",
                                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                QMessageBox.StandardButton.No) == QMessageBox.StandardButton.Yes:  # No: the default
            self.delete_requested.emit(int(cid))

    @Slot()
    def confirm_delete_all(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete all chat history",
                          "Delete every saved conversation? The history file is wiped (vacuumed): "
                          "this cannot be undone.", QMessageBox.StandardButton.Cancel, self)
        yes = box.addButton("Delete everything", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is yes:
            self.delete_all_requested.emit()

    def lock_private(self, why: str) -> None:
        """The administrator's policy keeps every chat private: the button stays on, and says why."""
        self.private_button.setEnabled(False)
        self.private_button.setToolTip(why)
        self.private_banner.setText(f"Private chat: nothing is saved. {why}")

    def show_private(self, on: bool, history_saved: bool) -> None:
        """Private mode: the banner shows; the saved list, its search and "Delete all" rest."""
        self.private_button.blockSignals(True)
        self.private_button.setChecked(on)
        self.private_button.blockSignals(False)
        self.private_banner.setVisible(on)
        self.conv_view.setEnabled(not on)
        self.search_edit.setEnabled(not on)
        self.delete_all_button.setEnabled(not on and history_saved)
