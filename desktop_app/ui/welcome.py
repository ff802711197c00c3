"""The welcome page: shown on first run and from Help › Welcome. What this machine is, the starter
model ready to chat, two or three picks for this machine for chat and for images (each with its
size, licence, fit and expected speed, and a Download button), and the two ways in without a
network (a folder or a model pack; an internal hub mirror). The picks are computed off the GUI
thread (hub/picks.py); the page only lays them out and says what the user chose:

  chat_requested()   download_requested(CatalogEntry)   import_requested()   mirror_requested()
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox, QDialog, QFrame, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget,
)

from desktop_app.ui.widgets.named import named

GiB = 1024**3


def machine_lines(hw) -> list[str]:
    """What this machine is, in a few lines (CPU, RAM, each GPU with its VRAM, the backends)."""
    if hw is None:
        return ["Looking at this machine…"]
    lines = [f"CPU: {hw.cpu_name} · {hw.cpu_cores} cores", f"Memory: {hw.ram_total_bytes / GiB:.0f} GB RAM"]
    for g in hw.gpus:
        kind = "unified memory (GPU share)" if getattr(g, "unified_memory", False) else "VRAM"
        lines.append(f"GPU: {g.name} · {g.vram_total_bytes / GiB:.0f} GB {kind}")
    if not hw.gpus:
        lines.append("GPU: none that can hold model weights: models run on the CPU")
    torch = hw.torch or {}
    image_dev = "CUDA" if torch.get("cuda") else "Metal (MPS)" if torch.get("mps") else "ROCm" if torch.get(
        "hip") else "CPU"
    lines.append(f"Runs on: chat with llama.cpp ({hw.llama_backend or 'not installed'}), images with torch "
                 f"({image_dev})")
    return lines


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class WelcomeDialog(QDialog):
    chat_requested = Signal()
    download_requested = Signal(object)
    import_requested = Signal()
    mirror_requested = Signal()

    def __init__(self, ctx, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("welcomeDialog")
        self.setWindowTitle("Welcome to Atelier")
        self.setAccessibleName("Welcome to Atelier")
        self.resize(900, 720)
        self.picks: dict[str, list] = {}
        self._op = None

        body = QWidget()
        v = QVBoxLayout(body)
        title = QLabel("<h2>Welcome to Atelier</h2>Chat and make images with open models, on this machine, with no "
                       "network. Nothing leaves it.")
        title.setWordWrap(True)
        v.addWidget(title)

        v.addWidget(self._heading("This machine"))
        self.machine_label = named(QLabel(), "welcomeMachine", "This machine")
        self.machine_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.machine_label)

        v.addWidget(self._heading("Ready now"))
        ready = QHBoxLayout()
        self.starter_label = named(QLabel("SmolLM2 135M Instruct, a small starter model, is installed: "
                                          "quick, and good for trying the app."), "welcomeStarter")
        self.starter_label.setWordWrap(True)
        self.chat_button = named(QPushButton("Start chatting"), "welcomeChat", "Start chatting with the starter model")
        self.chat_button.clicked.connect(self._on_chat)
        ready.addWidget(self.starter_label, 1)
        ready.addWidget(self.chat_button)
        v.addLayout(ready)

        self.grids: dict[str, QGridLayout] = {}
        for task, heading in (("chat", "Chat models for this machine"), ("image", "Image models for this machine")):
            v.addWidget(self._heading(heading))
            box = QWidget()
            box.setObjectName(f"welcomePicks_{task}")
            grid = QGridLayout(box)
            grid.setContentsMargins(0, 0, 0, 0)
            grid.addWidget(QLabel("Choosing the best for this machine…"), 0, 0)
            self.grids[task] = grid
            v.addWidget(box)

        v.addWidget(self._heading("No network here?"))
        offline = QHBoxLayout()
        self.import_button = named(QPushButton("Import a folder or a model pack…"), "welcomeImport",
                                   "Import models from a folder or a model pack")
        self.import_button.clicked.connect(self._on_import)
        self.mirror_button = named(QPushButton("Use an internal hub mirror…"), "welcomeMirror",
                                   "Set an internal hub mirror in Settings")
        self.mirror_button.clicked.connect(self._on_mirror)
        offline.addWidget(self.import_button)
        offline.addWidget(self.mirror_button)
        offline.addStretch(1)
        v.addLayout(offline)
        v.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        foot = QHBoxLayout()
        self.show_again = named(QCheckBox("Show this page when Atelier starts"), "welcomeShowAgain")
        self.show_again.setChecked(False)
        close = named(QPushButton("Close"), "welcomeClose", "Close the welcome page")
        close.clicked.connect(self.accept)
        foot.addWidget(self.show_again)
        foot.addStretch(1)
        foot.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(scroll, 1)
        lay.addLayout(foot)

        self.set_hardware(ctx.hardware)
        ctx.hardware_ready.connect(self.set_hardware)

    @staticmethod
    def _heading(text: str) -> QLabel:
        label = QLabel(f"<b>{text}</b>")
        label.setContentsMargins(0, 10, 0, 2)
        return label

    # content ------------------------------------------------------------------------------
    @Slot(object)
    def set_hardware(self, hw) -> None:
        self.machine_label.setText("\n".join(machine_lines(hw)))
        if hw is None:
            return
        from desktop_app.hub.catalog import load_catalog
        from desktop_app.hub.picks import picks_for_machine

        library = self.ctx.library

        def work(_token):  # the catalog and the fit plans: off the GUI thread
            catalog, installed = load_catalog(), [r.id for r in library.list()]
            return {t: picks_for_machine(catalog, hw, t, 3, installed) for t in ("chat", "image")}

        if self._op is not None:
            self._op.cancel()
        self._op = self.ctx.background.run(work, on_success=self._on_picks, on_failure=self._on_picks_failed)

    def _clear(self, grid: QGridLayout) -> None:
        while grid.count():
            w = grid.takeAt(0).widget()
            if w is not None:
                w.deleteLater()

    @Slot(object)
    def _on_picks(self, picks: dict) -> None:
        self._op = None
        self.picks = picks
        for task, grid in self.grids.items():
            self._clear(grid)
            rows = picks.get(task) or []
            if not rows:
                grid.addWidget(QLabel("Nothing in the catalog fits this machine well: see Models › Catalog."), 0, 0)
            for i, p in enumerate(rows):
                e = p.entry
                what = QLabel(f"<b>{escape(e.family)}</b> {escape(e.quantization)} · {escape(e.params or '')}<br>"
                              f"{escape(e.description)}")
                what.setWordWrap(True)
                facts = QLabel(f"{_size(e.size_bytes)} · licence {escape(e.license or 'see the model card')}<br>"
                               f"{escape(p.fit.badge)}: {escape(p.speed)}")
                facts.setWordWrap(True)
                button = named(QPushButton("Download"), f"welcomeDownload_{task}_{i}", f"Download {e.family}")
                button.clicked.connect(lambda _=False, entry=e: self.download_requested.emit(entry))
                grid.addWidget(what, i, 0)
                grid.addWidget(facts, i, 1)
                grid.addWidget(button, i, 2)
            grid.setColumnStretch(0, 3)
            grid.setColumnStretch(1, 2)

    @Slot(object)
    def _on_picks_failed(self, exc) -> None:
        self._op = None
        for grid in self.grids.values():
            self._clear(grid)
            grid.addWidget(QLabel(f"Could not read the catalog: {exc}"), 0, 0)

    # choices ------------------------------------------------------------------------------
    def _on_chat(self) -> None:
        self.chat_requested.emit()
        self.accept()

    def _on_import(self) -> None:
        self.import_requested.emit()
        self.accept()

    def _on_mirror(self) -> None:
        self.mirror_requested.emit()
        self.accept()

    def done(self, result: int) -> None:  # noqa: D401 - Qt API: any way the page closes
        if self._op is not None:
            self._op.cancel()
        try:
            self.ctx.settings.set("welcome_shown", not self.show_again.isChecked())
        except Exception:  # noqa: BLE001 - a read-only settings file: the page shows again next time
            pass
        super().done(result)
