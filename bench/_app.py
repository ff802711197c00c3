"""What the benches that drive the real window share: running the event loop until a condition,
the window with its tabs built, and a tiny SD 1.5 pipeline for the image tab, built in another
process (so that torch and the test helpers never load into the app being measured)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wait(app, cond, timeout: float, tick: float = 0.005) -> bool:
    """Run the event loop until ``cond()`` (deferred deletes too, as ``app.exec()`` would)."""
    from PySide6.QtCore import QCoreApplication, QEvent

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        if cond():
            return True
        time.sleep(tick)
    return False


def open_window(app):
    """The main window, shown and started, once its tabs are built."""
    from desktop_app.ui.main_window import MainWindow

    win = MainWindow()
    win.show()
    win.start()
    assert wait(app, lambda: None not in (win.chat_tab, win.studio_tab, win.models_tab), 30), "tabs not built"
    return win


def build_tiny_sd15(folder: Path) -> Path:
    """A tiny random SD 1.5 pipeline, written by a separate process."""
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                    "from tests.diffusion import tiny_pipelines as tp; tp.build_sd15(Path(sys.argv[1]))", str(folder)],
                   check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True)
    return folder


def add_tiny_image_model(win, folder: Path) -> None:
    """Register the tiny pipeline and select it in the Studio (64x64, 2 steps, prompt 'a fox')."""
    from PySide6.QtWidgets import QApplication

    from desktop_app.core.library import ModelRecord

    win.ctx.library.add(ModelRecord(id="tiny-sd15", task="image", format="diffusers", path=str(folder),
                                    size_bytes=1000, name="Tiny SD 1.5", family="sd15"))
    win.ctx.library_changed.emit()
    studio = win.studio_tab
    assert wait(QApplication.instance(), lambda: studio.select_model("tiny-sd15", load=False), 30)
    studio.params.prompt.setPlainText("a fox")
    studio.params.steps.setValue(2)
    studio.params.width_box.setValue(64)
    studio.params.height_box.setValue(64)
