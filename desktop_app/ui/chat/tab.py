"""The Chat tab (placeholder until its issue lands)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class ChatTab(QWidget):
    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("chatTab")
        self.setAccessibleName("Chat")
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Chat"))
