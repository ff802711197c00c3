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
def shown():
    print("SHOWN", flush=True)
    w.start()
    QTimer.singleShot(0, lambda: (w.close(), app.quit()))
QTimer.singleShot(0, shown)
app.exec()
"""


def one(code: str, env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    for line in proc.stdout:
        if line.startswith("SHOWN"):
            dt = time.perf_counter() - t0
            break
    else:
        raise RuntimeError("window never shown")
    proc.wait(timeout=60)
    return dt


def main(runs: int = 7) -> dict:
    home = tempfile.mkdtemp(prefix="atelier-bench-")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", ATELIER_HOME=home)
    one(APP, env), one(BARE, env)  # warm the OS file cache once for both
    app_t, bare_t = [], []
    for _ in range(runs):
        app_t.append(one(APP, env))
        bare_t.append(one(BARE, env))
    res = {
        "bench": "startup",
        "runs": runs,
        "app_median_s": round(statistics.median(app_t), 4),
        "bare_pyside6_median_s": round(statistics.median(bare_t), 4),
    }
    res["ratio"] = round(res["app_median_s"] / res["bare_pyside6_median_s"], 3)
    res["goal_ratio"] = 1.5
    return res


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)))
