"""The Qt binding we ship must not leak references to None (PySide6 6.12.0 on Python 3.11 did,
aborting the app with "none_dealloc" after a few thousand calls: a long chat would crash)."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = r"""
import sys
from PySide6.QtWidgets import QApplication, QLabel
app = QApplication([])
label = QLabel("x")
before = sys.getrefcount(None)
for i in range(3000):
    label.setText(str(i)); label.update(); label.repaint()
print(sys.getrefcount(None) - before)
"""


def test_void_qt_calls_do_not_leak_none_references():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, f"Qt binding crashed: {out.stderr[-500:]}"
    delta = int(out.stdout.strip().splitlines()[-1])
    assert abs(delta) < 100, f"None refcount drifted by {delta} over 3000 Qt calls"
