"""The Qt binding we ship must not leak references to None or False (PySide6 6.12.0 on Python 3.11
did, on every void call and Signal.emit, aborting the app with "none_dealloc" after a few thousand
calls: a long chat would crash). pyproject pins PySide6 below 6.12 for this."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = r"""
import sys
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication, QComboBox, QLabel
app = QApplication([])
class Emitter(QObject):
    sig = Signal(object)
em = Emitter(); em.sig.connect(lambda v: None)
label = QLabel("x"); combo = QComboBox(); combo.addItem("a", None)
n0, f0 = sys.getrefcount(None), sys.getrefcount(False)
for i in range(3000):
    label.setText(str(i)); label.update(); label.repaint()
    em.sig.emit(i); combo.currentData(); QTimer.singleShot(0, lambda: None); app.processEvents()
app.processEvents()
print(max(abs(sys.getrefcount(None) - n0), abs(sys.getrefcount(False) - f0)))
"""


def test_void_qt_calls_do_not_leak_none_references():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, f"Qt binding crashed: {out.stderr[-500:]}"
    delta = int(out.stdout.strip().splitlines()[-1])
    assert abs(delta) < 100, f"None refcount drifted by {delta} over 3000 rounds of Qt calls"
