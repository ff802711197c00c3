"""Open the main window (offscreen), let start-up run, close it; print one JSON line with what a
user would see. Used by tests that must run the GUI in another process (read-only homes)."""

from __future__ import annotations

import json
import sys
import time

from PySide6.QtCore import QTimer


def main() -> int:
    from desktop_app.app import create_app
    from desktop_app.core.logs import setup_logging

    setup_logging()
    app = create_app()
    from desktop_app.ui.main_window import MainWindow

    win = MainWindow()
    win.show()
    win.start()
    out: dict = {}

    def done() -> None:
        out["visible"] = win.isVisible()
        out["banner"] = win.storage_banner.text() if win.storage_banner.isVisible() else ""
        out["chat_notice"] = win.chat_tab.notice.text() if win.chat_tab is not None else None
        if len(sys.argv) > 1:
            win.grab().save(sys.argv[1])
        t = time.monotonic()
        win.close()
        out["close_s"] = round(time.monotonic() - t, 3)
        app.quit()

    QTimer.singleShot(int(float(sys.argv[2]) * 1000) if len(sys.argv) > 2 else 2500, done)
    app.exec()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
