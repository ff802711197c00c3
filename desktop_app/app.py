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


THEMES = ("system", "light", "dark")
_theme = {"mode": "system", "hooked": False}


def dark_palette():
    from PySide6.QtGui import QColor, QPalette

    p = QPalette()
    base, window, text = QColor(30, 30, 32), QColor(40, 40, 44), QColor(230, 230, 230)
    for role, color in ((QPalette.ColorRole.Window, window), (QPalette.ColorRole.WindowText, text),
                        (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, window),
                        (QPalette.ColorRole.Text, text), (QPalette.ColorRole.Button, window),
                        (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.ToolTipBase, base),
                        (QPalette.ColorRole.ToolTipText, text), (QPalette.ColorRole.Highlight, QColor(64, 128, 214)),
                        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
                        (QPalette.ColorRole.Link, QColor(110, 170, 255)),
                        (QPalette.ColorRole.PlaceholderText, QColor(150, 150, 150))):
        p.setColor(role, color)
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 120))
    return p


def apply_theme(app, mode: str | None = None) -> str:
    """The light or dark theme (Fusion): ``mode`` system (follows the desktop's scheme, live),
    light or dark; None reads the ``theme`` setting. Returns the mode in effect."""
    if mode is None:
        try:
            from desktop_app.core.settings import Settings

            mode = Settings().get("theme")
        except Exception:  # noqa: BLE001 - an unreadable settings file: the system's scheme
            mode = "system"
    _theme["mode"] = mode if mode in THEMES else "system"
    if "platform_dark" not in _theme:  # the platform's palette, before ours replaces it
        from PySide6.QtGui import QPalette

        _theme["platform_dark"] = app.palette().color(QPalette.ColorRole.Window).lightness() < 128
    platform_dark = _theme["platform_dark"]
    app.setStyle("Fusion")
    hints = app.styleHints()

    def system_dark(scheme=None) -> bool:
        from PySide6.QtCore import Qt

        return (scheme if scheme is not None else hints.colorScheme()) == Qt.ColorScheme.Dark

    def update(scheme=None) -> None:
        m = _theme["mode"]
        dark = m == "dark" or (m == "system" and system_dark(scheme))
        app.setPalette(dark_palette() if dark else app.style().standardPalette())

    _theme["update"] = update
    if not _theme["hooked"] and _theme["mode"] == "system":
        # At start-up, before the first window: the desktop's own palette says whether it is dark
        # (Qt's colour-scheme query builds the whole Qt namespace first, ~40 ms the window would wait)
        app.setPalette(dark_palette() if platform_dark else app.style().standardPalette())
    else:
        update()
    if not _theme["hooked"]:
        hints.colorSchemeChanged.connect(update)
        _theme["hooked"] = True
    return _theme["mode"]


def recheck_system_theme() -> None:
    """Once the first window is up: follow Qt's own colour-scheme answer (the start-up guess came
    from the platform's palette, which some desktops leave light in dark mode)."""
    update = _theme.get("update")
    if update is not None and _theme.get("mode") == "system":
        update()


def create_app(argv: list[str] | None = None):
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:  # (high-DPI scale factors pass through unrounded: Qt 6's default)
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("Atelier")
    app.setApplicationDisplayName("Atelier")
    app.setOrganizationName("Atelier")
    app.setDesktopFileName("atelier")
    # the icon (every window and dialog) is set by MainWindow.start(), once the window is up:
    # reading its files costs ~15 ms the window need not wait for (Qt gives it to open windows too)
    apply_theme(app)
    return app


def app_icon():
    """Atelier's icon: the SVG plus the rendered PNGs (16-512 px) for platforms without SVG."""
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QIcon

    from desktop_app.resources import resource

    icon = QIcon(str(resource("icons", "atelier.svg")))
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        png = resource("icons", f"atelier-{size}.png")
        if png.exists():
            icon.addFile(str(png), QSize(size, size))  # the size given: read only when drawn, not at start-up
    return icon


def run_gui() -> int:
    from desktop_app.core.logs import setup_logging

    setup_logging(debug=bool(os.environ.get("ATELIER_DEBUG")))
    app = create_app()
    install_excepthook()
    from desktop_app.ui.main_window import MainWindow

    win = MainWindow()
    win.show()
    from PySide6.QtCore import QTimer

    QTimer.singleShot(0, win.start)  # start-up work (shortcuts, detection, tabs) once the window is up
    shot = os.environ.get("ATELIER_SELF_TEST_SHOT")
    if shot:  # the packaging smoke test (installers/freeze): the window as a person sees it, then quit
        from PySide6.QtCore import QTimer

        def finish() -> None:
            win.grab().save(shot)
            win.close()
            app.quit()

        QTimer.singleShot(int(float(os.environ.get("ATELIER_SELF_TEST_S", "4")) * 1000), finish)
    return app.exec()
