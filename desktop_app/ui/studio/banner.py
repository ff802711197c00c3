"""The Image Studio's message banner: what went wrong, with Restart engine where a restart helps
(a crash, out of memory, an internal failure) and Dismiss."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout

from desktop_app.ui.widgets.named import named

PREFIX = {"crashed": "The image engine stopped. ", "oom": "Out of memory. ", "invalid_request": "",
          "model_format": "Model problem: "}
RESTARTABLE = ("crashed", "oom", "internal")


class StudioBanner(QFrame):
    restart_requested = Signal()
    dismissed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("studioBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        bl = QHBoxLayout(self)
        bl.setContentsMargins(6, 4, 6, 4)
        self.label = named(QLabel(), "studioBannerText")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.restart_button = named(QPushButton("Restart engine"), "studioRestartEngine", "Restart the image engine")
        self.restart_button.clicked.connect(self.restart_requested)
        self.close_button = named(QPushButton("Dismiss"), "studioBannerDismiss", "Dismiss message")
        self.close_button.clicked.connect(self.dismiss)
        bl.addWidget(self.label, 1)
        bv = QVBoxLayout()
        bv.addWidget(self.restart_button)
        bv.addWidget(self.close_button)
        bl.addLayout(bv)
        self.setVisible(False)

    def show_error(self, kind: str, message: str) -> None:
        self.label.setText(PREFIX.get(kind, "") + message)
        self.restart_button.setVisible(kind in RESTARTABLE)
        self.setVisible(True)

    def dismiss(self) -> None:
        self.setVisible(False)
        self.dismissed.emit()
