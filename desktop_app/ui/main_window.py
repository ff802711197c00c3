"""The main window: three tabs and a status bar with the hardware and the loaded models."""

from __future__ import annotations

import logging

from PySide6.QtCore import QUrl, Slot
from PySide6.QtGui import QAction, QDesktopServices, QIcon, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QTabWidget

from desktop_app import __version__
from desktop_app.resources import resource

from desktop_app.qt.context import AppContext

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    def __init__(self, ctx: AppContext | None = None) -> None:
        super().__init__()
        self.ctx = ctx or AppContext(self)
        self.setWindowTitle("Atelier")
        self.setObjectName("mainWindow")
        self.setAccessibleName("Atelier main window")
        self.resize(1200, 800)
        icon = resource("icons", "atelier.svg")
        if icon.exists():
            self.setWindowIcon(QIcon(str(icon)))

        from desktop_app.ui.chat.tab import ChatTab
        from desktop_app.ui.models.tab import ModelsTab
        from desktop_app.ui.studio.tab import StudioTab

        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("mainTabs")
        self.tabs.setAccessibleName("Main sections")
        self.tabs.setDocumentMode(True)
        self.chat_tab = ChatTab(self.ctx, self)
        self.studio_tab = StudioTab(self.ctx, self)
        self.models_tab = ModelsTab(self.ctx, self)
        self.tabs.addTab(self.chat_tab, "&Chat")
        self.tabs.addTab(self.studio_tab, "&Image Studio")
        self.tabs.addTab(self.models_tab, "&Models")
        self.setCentralWidget(self.tabs)

        for i in range(3):
            act = QAction(self)
            act.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            act.triggered.connect(lambda _=False, i=i: self.tabs.setCurrentIndex(i))
            self.addAction(act)

        self._build_menu()

        self.hardware_label = QLabel("Detecting hardware…")
        self.hardware_label.setObjectName("hardwareLabel")
        self.hardware_label.setAccessibleName("Detected hardware")
        self.loaded_label = QLabel("No model loaded")
        self.loaded_label.setObjectName("loadedModelsLabel")
        self.loaded_label.setAccessibleName("Loaded models")
        self.statusBar().addWidget(self.hardware_label)
        self.statusBar().addPermanentWidget(self.loaded_label)

        self.ctx.hardware_ready.connect(self._on_hardware_ready)
        self.ctx.loaded_models_changed.connect(self._on_loaded_models)
        self.ctx.status_message.connect(self._on_status_message)

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        settings = file_menu.addAction("&Settings…")
        settings.setShortcut(QKeySequence("Ctrl+,"))
        settings.triggered.connect(self._on_settings)
        logs = file_menu.addAction("Open &log folder")
        logs.triggered.connect(self._on_open_logs)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Quit))
        quit_action.triggered.connect(self.close)
        help_menu = self.menuBar().addMenu("&Help")
        about = help_menu.addAction("&About Atelier")
        about.triggered.connect(self._on_about)

    @Slot()
    def _on_settings(self) -> None:
        try:
            from desktop_app.ui.settings_dialog import SettingsDialog
        except ImportError:
            QMessageBox.information(self, "Settings", f"Settings are stored in {self.ctx.settings.path}.")
            return
        dlg = SettingsDialog(self.ctx, self)
        dlg.exec()

    @Slot()
    def _on_open_logs(self) -> None:
        from desktop_app.core.paths import get_paths

        QDesktopServices.openUrl(QUrl.fromLocalFile(str(get_paths().logs)))

    @Slot()
    def _on_about(self) -> None:
        QMessageBox.about(
            self,
            "About Atelier",
            f"<b>Atelier {__version__}</b><br>Chat with local language models and make images with local "
            "diffusion models, on your own machine, offline.<br>No telemetry; no network call unless you ask "
            "for a download or a hub search.",
        )

    def start(self) -> None:
        """Kick off background start-up work (after the window is shown)."""
        self.ctx.start()
        for tab in (self.chat_tab, self.studio_tab, self.models_tab):
            starter = getattr(tab, "start", None)
            if callable(starter):
                starter()

    @Slot(object)
    def _on_hardware_ready(self, hw) -> None:
        self.hardware_label.setText(hw.summary())
        warn = getattr(hw, "backend_warning", None)
        text = warn() if callable(warn) else None
        if text:
            self.hardware_label.setToolTip(text)
            self.statusBar().showMessage(text, 15000)

    @Slot(object)
    def _on_loaded_models(self, loaded: dict) -> None:
        self.loaded_label.setText(" · ".join(loaded.values()) if loaded else "No model loaded")

    @Slot(str)
    def _on_status_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        """Closing mid-generation exits cleanly: tabs stop their work, then every thread is joined."""
        for tab in (self.chat_tab, self.studio_tab, self.models_tab):
            closer = getattr(tab, "shutdown", None)
            if callable(closer):
                try:
                    closer()
                except Exception:  # noqa: BLE001
                    log.exception("tab shutdown failed")
        self.ctx.shutdown()
        super().closeEvent(event)
