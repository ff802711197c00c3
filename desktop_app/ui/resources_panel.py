"""The resources panel (from the status bar): what is loaded, the RAM and VRAM each engine process
really holds (core/usage.py, measured off the GUI thread, at most once a second while the panel is
shown), the machine's totals, and an Unload button per model."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QCheckBox, QDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_app.ui.memory_meter import human, measure_later
from desktop_app.ui.widgets.named import named
from desktop_app.ui.widgets.throttle import Coalescer

SLOT_NAMES = {"chat": "Chat", "image": "Image Studio"}
REFRESH_MS = 1000  # never faster than 1 Hz


class ResourcesPanel(QDialog):
    unload_requested = Signal(str)  # slot

    def __init__(self, ctx, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("resourcesPanel")
        self.setWindowTitle("Resources")
        self.setAccessibleName("Loaded models and memory")
        self.resize(640, 260)
        self.usage = None
        self.measurements = 0
        self._op = None
        v = QVBoxLayout(self)
        self.totals = named(QLabel("Measuring…"), "resourcesTotals", "Memory of this machine")
        v.addWidget(self.totals)
        self.rows_box = QWidget()
        self.grid = QGridLayout(self.rows_box)
        v.addWidget(self.rows_box)
        v.addStretch(1)
        foot = QHBoxLayout()
        foot.addStretch(1)
        close = named(QPushButton("Close"), "resourcesClose")
        close.clicked.connect(self.accept)
        foot.addWidget(close)
        v.addLayout(foot)
        self._timer = Coalescer(REFRESH_MS, self.refresh, self, mode="repeat")
        ctx.loaded_models_changed.connect(lambda _d: self.refresh())

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self.refresh()
        self._timer.start()

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._timer.stop()
        super().hideEvent(event)

    @Slot()
    def refresh(self) -> None:
        measure_later(self)

    @Slot(object)
    def _on_measured(self, usage) -> None:
        self._op = None
        self.usage = usage
        self.measurements += 1
        parts = [f"RAM: {human(usage.ram_used_bytes)} used of {human(usage.ram_total_bytes)}"]
        parts += [f"{g['name']}: {human(g['used_bytes'])} used of {human(g['total_bytes'])}" for g in usage.gpus]
        self.totals.setText(" · ".join(parts))
        while self.grid.count():
            w = self.grid.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        if not usage.slots:
            self.grid.addWidget(QLabel("No model is loaded. Models load when you send a message or generate."), 0, 0)
            return
        for i, head in enumerate(("Where", "Model", "RAM", "VRAM", "", "")):
            self.grid.addWidget(QLabel(f"<b>{head}</b>"), 0, i)
        for r, s in enumerate(usage.slots, 1):
            self.grid.addWidget(QLabel(SLOT_NAMES.get(s.slot, s.slot)), r, 0)
            self.grid.addWidget(named(QLabel(s.description), f"resourcesModel_{s.slot}"), r, 1)
            self.grid.addWidget(named(QLabel(human(s.ram_bytes) if s.pid else "?"), f"resourcesRam_{s.slot}"), r, 2)
            self.grid.addWidget(QLabel(human(s.vram_bytes) if s.vram_bytes else "—"), r, 3)
            b = named(QPushButton("Unload"), f"resourcesUnload_{s.slot}", f"Unload the {SLOT_NAMES.get(s.slot, s.slot)} "
                      "model and free its memory")
            b.clicked.connect(lambda _=False, slot=s.slot: self.unload_requested.emit(slot))
            self.grid.addWidget(b, r, 4)
            pin = named(QCheckBox("Pin"), f"resourcesPin_{s.slot}", f"Pin the {SLOT_NAMES.get(s.slot, s.slot)} model: "
                        "the memory broker never moves or unloads it to make room")
            pin.setChecked(s.slot in self.ctx.broker.pinned)
            pin.toggled.connect(lambda on, slot=s.slot: self.ctx.set_pinned(slot, on))
            self.grid.addWidget(pin, r, 5)
        self.grid.setColumnStretch(1, 1)

    @Slot(object)
    def _on_failed(self, exc) -> None:
        self._op = None
        self.totals.setText(f"Could not measure the memory: {exc}")

    def done(self, result: int) -> None:
        self._timer.stop()
        if self._op is not None:
            self._op.cancel()
            self._op = None
        super().done(result)
