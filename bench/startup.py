"""Start-up: time from process start to the window shown, Atelier vs a bare PySide6 window.

Interleaved runs in one process tree (each run a fresh child process, offscreen), medians and their
ratio (goal <= 1.5). Last stdout line: one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BARE = r"""
from PySide6.QtWidgets import QApplication, QMainWindow, QTabWidget, QLabel
from PySide6.QtCore import QTimer
app = QApplication([])
w = QMainWindow(); t = QTabWidget(); t.addTab(QLabel("x"), "Chat"); w.setCentralWidget(t); w.show()
def shown():
    print("SHOWN", flush=True); app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""

APP = r"""
from desktop_app.app import create_app
from desktop_app.ui.main_window import MainWindow
from PySide6.QtCore import QTimer
app = create_app()
w = MainWindow(); w.show()
def ready():
    # the Chat tab is built and its message box has the keyboard focus: the user can type
    if w._slots[0].tab is not None and w.focusWidget() is not None:
        print("READY", flush=True)
        w.close(); app.quit()
    else:
        QTimer.singleShot(1, ready)
def shown():
    print("SHOWN", flush=True)
    w.start()
    ready()
QTimer.singleShot(0, shown)
app.exec()
"""


def one(code: str, env: dict) -> dict:
    """Seconds from process start to each marker the child prints (SHOWN, READY)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    marks = {}
    for line in proc.stdout:
        marks[line.strip()] = time.perf_counter() - t0
    proc.wait(timeout=60)
    if "SHOWN" not in marks:
        raise RuntimeError("window never shown")
    return marks


def main(runs: int = 7) -> dict:
    # An installed app runs from byte-compiled files (pip compiles on install; the set-up script does
    # it for the editable checkout). Compile here too, so PYTHONDONTWRITEBYTECODE=1 in the
    # environment does not make every run re-compile the sources.
    import compileall
    from pathlib import Path

    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "desktop_app"), quiet=1)
    home = tempfile.mkdtemp(prefix="atelier-bench-")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", ATELIER_HOME=home)
    one(APP, env), one(BARE, env)  # warm the OS file cache once for both
    app_t, ready_t, bare_t = [], [], []
    for _ in range(runs):
        marks = one(APP, env)
        app_t.append(marks["SHOWN"])
        ready_t.append(marks.get("READY", float("nan")))
        bare_t.append(one(BARE, env)["SHOWN"])
    res = {
        "bench": "startup",
        "runs": runs,
        "app_median_s": round(statistics.median(app_t), 4),
        "bare_pyside6_median_s": round(statistics.median(bare_t), 4),
        # the Chat tab built and its message box focused (tabs are built after the first paint)
        "app_chat_ready_median_s": round(statistics.median(ready_t), 4),
    }
    res["ratio"] = round(res["app_median_s"] / res["bare_pyside6_median_s"], 3)
    res["ready_ratio"] = round(res["app_chat_ready_median_s"] / res["bare_pyside6_median_s"], 3)
    res["goal_ratio"] = 1.5
    return res


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)))
