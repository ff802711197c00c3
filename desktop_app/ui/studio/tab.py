"""The Image Studio tab (placeholder until its issue lands)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class StudioTab(QWidget):
    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("studioTab")
        self.setAccessibleName("Image Studio")
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Image Studio"))
