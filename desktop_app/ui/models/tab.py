"""The Models tab (placeholder until its issue lands)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class ModelsTab(QWidget):
    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("modelsTab")
        self.setAccessibleName("Models")
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Models"))
