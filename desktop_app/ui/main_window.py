"""The main window: three tabs and a status bar with the hardware and the loaded models."""

from __future__ import annotations

import logging

import importlib

from PySide6.QtCore import QTimer, QUrl, Slot  # not Qt: its namespace costs ~40 ms to build (after the window)
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices, QIcon, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QTabWidget, QToolButton, QVBoxLayout, QWidget

from desktop_app import __version__
from desktop_app.resources import resource

from desktop_app.qt.context import AppContext
from desktop_app.ui.widgets.named import named

log = logging.getLogger(__name__)

# (attribute, tab label, "module:class"). Tabs are built right after the window is first shown
# (start()), the current one first, or on first use, so that the window appears as fast as a bare
# one; bench/startup.py measures both the window and the chat tab being ready.
TABS = (
    ("chat_tab", "&Chat", "desktop_app.ui.chat.tab:ChatTab"),
    ("studio_tab", "&Image Studio", "desktop_app.ui.studio.tab:StudioTab"),
    ("models_tab", "&Models", "desktop_app.ui.models.tab:ModelsTab"),
)


class _TabSlot(QWidget):
    """A page of the tab widget that holds its real tab once built."""

    def __init__(self, name: str, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName(f"{name}Slot")
        self.setAccessibleName(name)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.tab: QWidget | None = None


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

        self.tabs = named(QTabWidget(self), "mainTabs", "Main sections")
        self.tabs.setDocumentMode(True)
        self._slots: list[_TabSlot] = []
        for _attr, label, _target in TABS:
            slot = _TabSlot(label.replace("&", ""), self.tabs)
            self._slots.append(slot)
            self.tabs.addTab(slot, label)
        central = QWidget(self)
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        # Said once and plainly, for as long as it is true: nothing this session does can be saved.
        from desktop_app.core.paths import storage_problem

        self.storage_banner = named(QLabel(self), "storageBanner")
        self.storage_banner.setWordWrap(True)
        self.storage_banner.setContentsMargins(8, 4, 8, 4)
        problem = storage_problem()
        lines = [f"⚠ Nothing can be saved in this session: {problem} Chats stay private, and settings, "
                 "downloads and imports are not kept."] if problem else []
        lines += [f"⚠ {why}." for why in self.ctx.settings.problems]  # a hand-edited settings.json
        from desktop_app.core.policy import current as current_policy

        pol = current_policy()
        if pol.error:  # a malformed policy is never ignored: the app runs locked down, and says why
            lines.append(f"⚠ The administrator's policy is not valid, so Atelier runs in its most restrictive "
                         f"mode: {pol.error}")
        if lines:  # paths and file names: plain text, never markup
            from PySide6.QtCore import Qt

            self.storage_banner.setTextFormat(Qt.TextFormat.PlainText)
        self.storage_banner.setText("\n".join(lines))
        self.storage_banner.setVisible(bool(lines))
        lay.addWidget(self.storage_banner)
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self._started = False
        self._ask_on_quit = False  # File › Quit asks like the window's close button
        self.tabs.currentChanged.connect(self._on_tab_changed)

        # Shortcuts are set in start(), once the window is up: the first QKeySequence builds Qt's
        # key enums (~40 ms the window would wait for).
        self._shortcuts: list[tuple[QAction, str]] = []
        for i in range(3):
            act = QAction(self)
            self._shortcuts.append((act, f"Ctrl+{i + 1}"))
            act.triggered.connect(lambda _=False, i=i: self.tabs.setCurrentIndex(i))
            self.addAction(act)

        self._build_menu()

        self.hardware_label = named(QLabel("Detecting hardware…"), "hardwareLabel", "Detected hardware")
        self.loaded_label = named(QLabel("No model loaded"), "loadedModelsLabel", "Loaded models")
        self.resources_button = named(QToolButton(), "resourcesButton", "Resources: loaded models and memory")
        self.resources_button.setText("Resources…")
        self.resources_button.setAutoRaise(True)
        self.resources_button.setToolTip("What is loaded, the memory each model holds, and Unload")
        self.resources_button.clicked.connect(self.show_resources)
        from desktop_app.ui.memory_meter import MemoryMeter

        self.memory_meter = MemoryMeter(self.ctx)
        self.memory_meter.clicked.connect(self.show_resources)
        self.statusBar().addWidget(self.hardware_label)
        self.statusBar().addPermanentWidget(self.loaded_label)
        self.statusBar().addPermanentWidget(self.memory_meter)
        self.statusBar().addPermanentWidget(self.resources_button)

        self.ctx.hardware_ready.connect(self._on_hardware_ready)
        self.ctx.loaded_models_changed.connect(self._on_loaded_models)
        self.ctx.status_message.connect(self._on_status_message)
        self.ctx.open_in_studio.connect(lambda _p: self.tabs.setCurrentIndex(1))

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        settings = file_menu.addAction("&Settings…")
        self._shortcuts.append((settings, "Ctrl+,"))
        settings.triggered.connect(self._on_settings)
        serve = file_menu.addAction("Local &server (OpenAI API)…")
        serve.triggered.connect(self.show_server)
        logs = file_menu.addAction("Open &log folder")
        logs.triggered.connect(self._on_open_logs)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        self._shortcuts.append((quit_action, "Quit"))  # the platform's own (QKeySequence.StandardKey)
        quit_action.triggered.connect(self.request_quit)
        view_menu = self.menuBar().addMenu("&View")
        theme_menu = view_menu.addMenu("&Theme")
        self.theme_actions = {}
        group = QActionGroup(self)
        current = self.ctx.settings.get("theme")
        for mode, text in (("system", "&System"), ("light", "&Light"), ("dark", "&Dark")):
            act = theme_menu.addAction(text)
            act.setCheckable(True)
            act.setChecked(mode == current)
            act.triggered.connect(lambda _=False, m=mode: self.set_theme(m))
            group.addAction(act)
            self.theme_actions[mode] = act
        help_menu = self.menuBar().addMenu("&Help")
        welcome = help_menu.addAction("&Welcome…")
        welcome.triggered.connect(self.show_welcome)
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

    # tabs ------------------------------------------------------------------------------
    def _build_tab(self, index: int) -> QWidget:
        slot = self._slots[index]
        if slot.tab is None:
            attr, _label, target = TABS[index]
            mod_name, cls_name = target.split(":")
            cls = getattr(importlib.import_module(mod_name), cls_name)
            slot.tab = cls(self.ctx, slot)
            slot.layout().addWidget(slot.tab)
            from desktop_app.ui.widgets.icons import decorate  # QtSvg: loaded after the window is shown

            decorate(slot.tab)  # the bundled icon set on its actions
            if index == 1:  # /imagine in the chat, and its images opened here (through the context)
                from desktop_app.ui.studio.from_chat import StudioForChat

                slot.tab.for_chat = StudioForChat(self.ctx, slot.tab)
            if self._started:
                self._start_tab(slot.tab)
        return slot.tab

    def _built_tabs(self) -> list[QWidget]:
        return [s.tab for s in self._slots if s.tab is not None]

    @property
    def chat_tab(self):
        return self._build_tab(0)

    @property
    def studio_tab(self):
        return self._build_tab(1)

    @property
    def models_tab(self):
        return self._build_tab(2)

    @Slot(int)
    def _on_tab_changed(self, index: int) -> None:
        if 0 <= index < len(self._slots):
            self._build_tab(index)

    @staticmethod
    def _start_tab(tab: QWidget) -> None:
        tab.start()  # every tab has start() and shutdown()

    @Slot()
    def _build_remaining_tabs(self) -> None:
        """One tab per event-loop turn, the current one first, so the GUI stays responsive."""
        if not self._started:
            return
        todo = [i for i, s in enumerate(self._slots) if s.tab is None]
        if not todo:
            return
        current = self.tabs.currentIndex()
        self._build_tab(current if current in todo else todo[0])
        if len(todo) > 1:
            QTimer.singleShot(0, self._build_remaining_tabs)

    def start(self) -> None:
        """Kick off background start-up work (after the window is shown)."""
        if self._started:
            return
        self._started = True
        from PySide6.QtWidgets import QApplication

        from desktop_app.app import app_icon

        QApplication.instance().setWindowIcon(app_icon())
        for act, keys in self._shortcuts:
            std = getattr(QKeySequence.StandardKey, keys, None) if keys.isalpha() else None
            act.setShortcut(QKeySequence(std) if std is not None else QKeySequence(keys))
        self.ctx.start()
        self.memory_meter.start()
        from desktop_app.app import recheck_system_theme

        QTimer.singleShot(0, recheck_system_theme)
        for tab in self._built_tabs():
            self._start_tab(tab)
        if not self.ctx.settings.get("welcome_shown"):  # first run: somewhere to go from here
            QTimer.singleShot(0, self.show_welcome)
        # the tabs are built once the event loop has painted the window
        QTimer.singleShot(0, self._build_remaining_tabs)

    @Slot(object)
    def _on_hardware_ready(self, hw) -> None:
        self.hardware_label.setText(hw.summary())
        text = hw.backend_warning()
        if text:
            self.hardware_label.setToolTip(text)
            self.statusBar().showMessage(text, 15000)

    @Slot(object)
    def _on_loaded_models(self, loaded: dict) -> None:
        self.loaded_label.setText(" · ".join(loaded.values()) if loaded else "No model loaded")

    @Slot(str)
    def _on_status_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    def set_theme(self, mode: str) -> None:
        """View › Theme: applied at once to every window, and remembered."""
        from PySide6.QtWidgets import QApplication

        from desktop_app.app import apply_theme

        apply_theme(QApplication.instance(), mode)
        self.theme_actions[mode].setChecked(True)
        try:
            self.ctx.settings.set("theme", mode)
        except Exception:  # noqa: BLE001 - a read-only settings file: the theme holds for this session
            log.warning("could not save the theme", exc_info=True)

    # the local server -----------------------------------------------------------------------
    def show_server(self):
        """File › Local server: the OpenAI API for other programs, on the Chat tab's model thread."""
        if getattr(self, "server_panel", None) is None:
            from desktop_app.ui.server_panel import ServerPanel

            self.server_panel = ServerPanel(self.ctx, self)
        self.server_panel.show()
        self.server_panel.raise_()
        return self.server_panel

    # resources ----------------------------------------------------------------------------
    @Slot()
    def show_resources(self):
        from desktop_app.ui.resources_panel import ResourcesPanel

        if getattr(self, "resources", None) is None:
            self.resources = ResourcesPanel(self.ctx, self)
            self.resources.unload_requested.connect(self.unload_slot)
        self.resources.show()
        self.resources.raise_()
        return self.resources

    @Slot(str)
    def unload_slot(self, slot: str) -> None:
        if slot == "chat" and self._slots[0].tab is not None:
            self.chat_tab.controller.unload()
        elif slot == "image" and self._slots[1].tab is not None:
            if self.studio_tab.controller.unload() is None:
                self.ctx.status_message.emit("The Image Studio is busy: cancel the generation first, then unload.")

    # welcome ------------------------------------------------------------------------------
    @Slot()
    def show_welcome(self):
        """The welcome page (modeless: the app stays usable behind it)."""
        from desktop_app.ui.welcome import WelcomeDialog

        if getattr(self, "welcome", None) is not None and self.welcome.isVisible():
            self.welcome.raise_()
            return self.welcome
        from desktop_app.ui.widgets.icons import decorate

        dlg = self.welcome = WelcomeDialog(self.ctx, self)
        decorate(dlg)
        dlg.chat_requested.connect(self._welcome_chat)
        dlg.download_requested.connect(lambda entry: self._show_models("catalog").download_entry(entry))
        dlg.import_requested.connect(lambda: self._show_models("library"))
        dlg.mirror_requested.connect(lambda: self._show_models("catalog")._on_settings_clicked())
        dlg.show()
        return dlg

    def _welcome_chat(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.chat_tab.input.setFocus()

    def _show_models(self, section: str):
        self.tabs.setCurrentIndex(2)
        tab = self.models_tab
        tab.sections.setCurrentWidget(getattr(tab, section))
        return tab

    @Slot()
    def request_quit(self) -> bool:
        """File › Quit: the user's own close (asks first while downloads run). True if it closed."""
        self._ask_on_quit = True
        try:
            return self.close()
        finally:
            self._ask_on_quit = False

    def quit_box(self, n: int) -> QMessageBox:
        """Quitting would interrupt downloads: ask first; "Keep downloading" is the default."""
        box = QMessageBox(QMessageBox.Icon.Question, "Quit Atelier?",
                          f"{n} download(s) are not finished. Quitting pauses them: what was downloaded is kept, "
                          "and they continue when you resume them in Models › Downloads.",
                          QMessageBox.StandardButton.NoButton, self)
        box.setObjectName("quitDuringDownloads")
        quit_b = box.addButton("Quit and pause them", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep downloading", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.setProperty("quit_button", quit_b)
        return box

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        """Closing mid-generation exits cleanly: tabs stop their work, then every thread is joined.
        A close by the user (the window's button, Ctrl+Q) while downloads run asks first."""
        models = self._slots[2].tab if len(self._slots) > 2 else None
        n = models.downloads.active_count() if models is not None else 0
        if n and (event.spontaneous() or self._ask_on_quit):
            box = self.quit_box(n)
            box.exec()
            if box.clickedButton() is not box.property("quit_button"):
                event.ignore()
                return
        self._started = False  # no more deferred tab building
        self.memory_meter.stop()
        if getattr(self, "server_panel", None) is not None:
            self.server_panel.shutdown()  # before the model threads stop
        for tab in self._built_tabs():
            try:
                tab.shutdown()
            except Exception:  # noqa: BLE001 - the other tabs and the threads must still stop
                log.exception("tab shutdown failed")
        self.ctx.shutdown()
        super().closeEvent(event)
