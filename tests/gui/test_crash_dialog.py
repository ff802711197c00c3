"""An uncaught exception shows a dialog with the log path instead of vanishing."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox

pytestmark = pytest.mark.gui


def test_uncaught_exception_shows_dialog_with_log_path(qtbot):
    from desktop_app.app import install_excepthook
    from desktop_app.core.logs import log_file

    old = sys.excepthook
    try:
        install_excepthook()
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            sys.excepthook(*sys.exc_info())
        boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.objectName() == "crashDialog"]
        assert boxes, "no crash dialog shown"
        box = boxes[-1]
        assert "boom" in box.text() and str(log_file()) in box.text()
        box.close()
    finally:
        sys.excepthook = old
