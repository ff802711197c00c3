"""The live memory meter in the status bar: what each loaded model really holds (RAM, and VRAM
on NVIDIA GPUs) and what is free, measured by core/usage.py in the background lane at most once a
second (a measurement still running is never stacked with another), and never on the GUI
thread. It is a button: a click opens the resources panel (Unload, pin)."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QToolButton, QWidget

from desktop_app.ui.widgets.named import named
from desktop_app.ui.widgets.throttle import Coalescer

INTERVAL_MS = 1000  # never faster than 1 Hz
SHORT = {"chat": "Chat", "image": "Studio"}


def human(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def measure_later(owner) -> None:
    """One measurement (core/usage.measure) in the background lane for ``owner`` (a view with
    ``ctx``, ``_op``, ``_on_measured`` and ``_on_failed``), unless its last one still runs: they
    never pile up."""
    if owner._op is not None:
        return
    from desktop_app.core.usage import measure

    slots = owner.ctx.loaded_slots()
    owner._op = owner.ctx.background.run(lambda _t: measure(slots), on_success=owner._on_measured,
                                         on_failure=owner._on_failed)


def meter_text(usage) -> tuple[str, str]:
    """(the status-bar line, its tooltip) for a core.usage.Usage."""
    parts, tips = [], []
    for s in usage.slots:
        held = human(s.ram_bytes) + (f" + {human(s.vram_bytes)} VRAM" if s.vram_bytes else "")
        if not s.ram_bytes and (s.description or "").endswith("(remote server)"):
            held = "on a team server"  # nothing of it is in this machine's memory
        parts.append(f"{SHORT.get(s.slot, s.slot)} {held}")
        tips.append(f"{s.description}: {held}")
    free = max(0, usage.ram_total_bytes - usage.ram_used_bytes)
    parts.append(f"RAM {human(free)} free")
    tips.append(f"RAM: {human(usage.ram_used_bytes)} used of {human(usage.ram_total_bytes)}")
    for g in usage.gpus:
        gfree = max(0, int(g["total_bytes"]) - int(g["used_bytes"]))
        parts.append(f"VRAM {human(gfree)} free")
        tips.append(f"{g['name']}: {human(int(g['used_bytes']))} used of {human(int(g['total_bytes']))}")
    return " · ".join(parts), "\n".join(tips + ["Click for the loaded models, Unload and Pin."])


class MemoryMeter(QToolButton):
    measured = Signal(object)  # the Usage just shown

    def __init__(self, ctx, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        named(self, "memoryMeter", "Memory used by the loaded models, and free")
        self.ctx = ctx
        self.setAutoRaise(True)
        self.setText("Memory…")
        self.usage = None
        self.measurements = 0
        self._op = None
        self._timer = Coalescer(INTERVAL_MS, self.refresh, self, mode="repeat")  # a load shows at the next tick

    def start(self) -> None:
        self.refresh()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        if self._op is not None:
            self._op.cancel()
            self._op = None

    @Slot()
    def refresh(self) -> None:
        if not getattr(self.ctx, "_shut_down", False):
            measure_later(self)

    @Slot(object)
    def _on_measured(self, usage) -> None:
        self._op = None
        self.usage = usage
        self.measurements += 1
        for s in usage.slots:  # the broker counts a loaded model at what it really holds
            self.ctx.broker.measured(s.slot, s.ram_bytes, s.vram_bytes)
        text, tip = meter_text(usage)
        self.setText(text)
        self.setToolTip(tip)
        self.measured.emit(usage)

    @Slot(object)
    def _on_failed(self, exc) -> None:
        self._op = None
        self.setText("Memory: ?")
        self.setToolTip(f"Could not measure the memory: {exc}")
