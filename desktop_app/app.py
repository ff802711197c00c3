"""GUI entry point: QApplication set-up, theme, crash dialog, main window."""

from __future__ import annotations

import logging
import os
import sys
import traceback

log = logging.getLogger("atelier")
_open_dialogs: list = []  # keep crash dialogs alive while they are shown


def install_excepthook() -> None:
    """An uncaught exception is logged and shown in a dialog with the log path, never lost."""
    from PySide6.QtWidgets import QMessageBox

    from desktop_app.core.logs import log_file

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        log.error("uncaught exception:\n%s", "".join(traceback.format_exception(exc_type, exc, tb)))
        try:
            box = QMessageBox(QMessageBox.Icon.Critical, "Atelier — unexpected error",
                              f"Something went wrong: {exc_type.__name__}: {exc}\n\n"
                              f"Details were written to the log:\n{log_file()}\n\n"
                              "Atelier keeps running; if something looks wrong, restart it.")
            box.setObjectName("crashDialog")
            box.setAccessibleName("Unexpected error")
            _open_dialogs.append(box)
            box.finished.connect(lambda _r, b=box: _open_dialogs.remove(b) if b in _open_dialogs else None)
            box.open()  # not exec(): a nested event loop inside an excepthook can re-enter the failing code
        except Exception:  # noqa: BLE001 - never recurse while reporting
            log.exception("could not show the crash dialog")

    sys.excepthook = hook


def apply_theme(app) -> None:
    """Follow the system's light/dark scheme (Fusion palette, updated live)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    hints = app.styleHints()

    def update(*_args) -> None:
        dark = hints.colorScheme() == Qt.ColorScheme.Dark
        if not dark:
            app.setPalette(app.style().standardPalette())
            return
        p = QPalette()
        base, window, text = QColor(30, 30, 32), QColor(40, 40, 44), QColor(230, 230, 230)
        p.setColor(QPalette.ColorRole.Window, window)
        p.setColor(QPalette.ColorRole.WindowText, text)
        p.setColor(QPalette.ColorRole.Base, base)
        p.setColor(QPalette.ColorRole.AlternateBase, window)
        p.setColor(QPalette.ColorRole.Text, text)
        p.setColor(QPalette.ColorRole.Button, window)
        p.setColor(QPalette.ColorRole.ButtonText, text)
        p.setColor(QPalette.ColorRole.ToolTipBase, base)
        p.setColor(QPalette.ColorRole.ToolTipText, text)
        p.setColor(QPalette.ColorRole.Highlight, QColor(64, 128, 214))
        p.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
        p.setColor(QPalette.ColorRole.Link, QColor(110, 170, 255))
        p.setColor(QPalette.ColorRole.PlaceholderText, QColor(150, 150, 150))
        app.setPalette(p)

    update()
    hints.colorSchemeChanged.connect(update)


def create_app(argv: list[str] | None = None):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("Atelier")
    app.setApplicationDisplayName("Atelier")
    app.setOrganizationName("Atelier")
    app.setDesktopFileName("atelier")
    app.setWindowIcon(app_icon())  # every window and dialog
    apply_theme(app)
    return app


def app_icon():
    """Atelier's icon: the SVG plus the rendered PNGs (16-512 px) for platforms without SVG."""
    from PySide6.QtGui import QIcon

    from desktop_app.resources import resource

    icon = QIcon(str(resource("icons", "atelier.svg")))
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        png = resource("icons", f"atelier-{size}.png")
        if png.exists():
            icon.addFile(str(png))
    return icon


def run_gui() -> int:
    from desktop_app.core.logs import setup_logging

    setup_logging(debug=bool(os.environ.get("ATELIER_DEBUG")))
    app = create_app()
    install_excepthook()
    from desktop_app.ui.main_window import MainWindow

    win = MainWindow()
    win.show()
    win.start()  # background start-up work begins after the window is shown
    shot = os.environ.get("ATELIER_SELF_TEST_SHOT")
    if shot:  # the packaging smoke test (installers/freeze): the window as a person sees it, then quit
        from PySide6.QtCore import QTimer

        def finish() -> None:
            win.grab().save(shot)
            win.close()
            app.quit()

        QTimer.singleShot(int(float(os.environ.get("ATELIER_SELF_TEST_S", "4")) * 1000), finish)
    return app.exec()
