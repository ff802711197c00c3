"""The Chat tab's top row: the model picker (library chat models with how each fits this
machine), Export and the Parameters toggle. It lays out and asks; the tab does the work."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMenu, QToolButton, QWidget

from desktop_app.core.starter import STARTER_ID
from desktop_app.ui.widgets.named import named

STARTER_LABEL = "Starter model (SmolLM2 135M)"
log = logging.getLogger(__name__)


def list_chat_models(library, hardware, settings=None) -> list[dict]:
    """The library's chat models with their fit badges (reads GGUF headers: run it off the GUI
    thread), then the team servers' models as last listed (core/remotes: no socket is opened).
    A file that cannot be read says so in its badge."""
    from desktop_app.core.policy import current, record_digest
    from desktop_app.ui.widgets.fit import plan_or_error

    pol = current()
    out = []
    for rec in library.list(task="chat"):
        badge, plan = "", {}
        if pol.restricts_models and Path(rec.path).exists() and not pol.approves(record_digest(rec)):
            out.append({"id": rec.id, "name": rec.display_name, "badge": "not approved by your administrator",
                        "note": f"Not approved by {pol.source}: it cannot be loaded."})
            continue
        if hardware is not None:
            p, exc = plan_or_error(rec, hardware)
            if exc is None:
                badge, plan = p.badge, {"plan": p.plan, "note": getattr(p, "note", "")}
            else:
                badge = f"unreadable: {exc}"[:60]
        out.append({"id": rec.id, "name": rec.display_name, "badge": badge, **plan})
    from desktop_app.core.remotes import remote_entries

    try:
        out += remote_entries("chat", settings)
    except Exception as exc:  # noqa: BLE001 - a broken cache never hides the local models
        log.warning("could not list the remote models: %s", exc)
    return out


class ChatHeader(QWidget):
    export_requested = Signal(str)  # "md" | "json"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        top = QHBoxLayout(self)
        top.setContentsMargins(0, 0, 0, 0)
        self.model_combo = named(QComboBox(), "chatModelPicker",
                                 "Chat model", "Chat models in your library, with how each fits this machine")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.model_combo.addItem(STARTER_LABEL, STARTER_ID)
        self.params_button = named(QToolButton(), "chatParamsToggle")
        self.params_button.setText("Parameters")
        self.params_button.setCheckable(True)
        self.params_button.setAccessibleName("Show chat parameters")
        self.params_button.setToolTip("System prompt, sampling and presets for this chat")
        self.export_button = named(QToolButton(), "chatExport")
        self.export_button.setText("Export")
        self.export_button.setAccessibleName("Export conversation")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        em = QMenu(self.export_button)
        em.addAction("As Markdown…", lambda: self.export_requested.emit("md"))
        em.addAction("As JSON…", lambda: self.export_requested.emit("json"))
        self.export_button.setMenu(em)
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model_combo, 1)
        top.addWidget(self.export_button)
        top.addWidget(self.params_button)

    @property
    def chosen_model(self) -> str:
        return self.model_combo.currentData() or STARTER_ID

    def select_model(self, model_id: str) -> None:
        i = self.model_combo.findData(model_id)
        if i >= 0:
            self.model_combo.setCurrentIndex(i)

    def set_models(self, models: list[dict]) -> None:
        """Refill the picker (the starter first, then by name), keeping the current choice."""
        current = self.chosen_model
        combo = self.model_combo
        combo.clear()
        if not any(m["id"] == STARTER_ID for m in models):
            combo.addItem(STARTER_LABEL, STARTER_ID)
        for m in sorted(models, key=lambda m: (m["id"] != STARTER_ID, bool(m.get("server")), m["name"].lower())):
            label = m["name"] + (f"  —  {m['badge']}" if m["badge"] else "")
            combo.addItem(label, m["id"])
            combo.setItemData(combo.count() - 1, m.get("note") or label, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(max(0, combo.findData(current)))
