"""Per-chat system prompt and sampling parameters, with named presets (JSON in the config dir)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QInputDialog, QLabel, QLineEdit, QPlainTextEdit,
    QPushButton, QSpinBox, QVBoxLayout, QWidget,
)
from desktop_app.ui.chat.engine_panel import EnginePanel
from desktop_app.ui.widgets.named import named

log = logging.getLogger(__name__)

DEFAULTS: dict = {
    "temperature": 0.7,
    "top_p": 0.95,
    "top_k": 40,
    "min_p": 0.05,
    "repeat_penalty": 1.1,
    "max_tokens": 1024,
    "seed": -1,
    "stop": [],
}
PRESETS_FILE = "chat_presets.json"


def presets_path() -> Path:
    from desktop_app.core.paths import get_paths

    return get_paths().config / PRESETS_FILE


def load_presets(path: Path | None = None) -> dict[str, dict]:
    path = path or presets_path()
    try:
        raw = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("chat presets file %s unreadable: %s", path, exc)
        return {}
    return {str(k): dict(v) for k, v in raw.get("presets", {}).items() if isinstance(v, dict)}


def save_presets(presets: dict[str, dict], path: Path | None = None) -> None:
    path = path or presets_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": 1, "presets": presets}, indent=1, sort_keys=True), "utf-8")
    os.replace(tmp, path)


class ParamsPanel(QWidget):
    """System prompt + sampling controls. ``changed`` fires on every edit (the tab saves them with
    the conversation)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatParamsPanel")
        self.setAccessibleName("Chat parameters")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)

        row = QHBoxLayout()
        self.preset_combo = named(QComboBox(), "chatPresetCombo", "Parameter preset", "Apply a saved set of parameters")
        self.save_preset_button = named(QPushButton("Save as…"), "chatSavePreset", "Save parameters as a preset")
        row.addWidget(self.preset_combo, 1)
        row.addWidget(self.save_preset_button)
        lay.addWidget(QLabel("Preset"))
        lay.addLayout(row)

        lay.addWidget(QLabel("System prompt"))
        self.system_edit = named(QPlainTextEdit(), "chatSystemPrompt", "System prompt")
        self.system_edit.setPlaceholderText("e.g. You are a concise assistant.")
        self.system_edit.setTabChangesFocus(True)
        self.system_edit.setMaximumHeight(120)
        lay.addWidget(self.system_edit)

        form = QFormLayout()

        def dspin(name, lo, hi, step, dec, tip):
            w = QDoubleSpinBox()
            w.setRange(lo, hi)
            w.setSingleStep(step)
            w.setDecimals(dec)
            w.setAccessibleName(name)
            w.setToolTip(tip)
            return w

        def ispin(name, lo, hi, tip):
            w = QSpinBox()
            w.setRange(lo, hi)
            w.setAccessibleName(name)
            w.setToolTip(tip)
            return w

        self.temperature = dspin("Temperature", 0.0, 2.0, 0.05, 2, "0 = always the most likely token")
        self.top_p = dspin("Top p", 0.0, 1.0, 0.01, 2, "Nucleus sampling")
        self.top_k = ispin("Top k", 0, 1000, "0 = off")
        self.min_p = dspin("Min p", 0.0, 1.0, 0.01, 2, "Drop tokens less likely than this share of the best")
        self.repeat_penalty = dspin("Repeat penalty", 0.5, 2.0, 0.05, 2, "1 = off")
        self.max_tokens = ispin("Max tokens", 1, 1_000_000, "Longest reply")
        self.seed = ispin("Seed", -1, 2**31 - 1, "-1 = random")
        self.stop_edit = QLineEdit()
        self.stop_edit.setAccessibleName("Stop strings")
        self.stop_edit.setPlaceholderText("comma-separated, e.g. ###, User:")
        for label, w in (("Temperature", self.temperature), ("Top p", self.top_p), ("Top k", self.top_k),
                         ("Min p", self.min_p), ("Repeat penalty", self.repeat_penalty),
                         ("Max tokens", self.max_tokens), ("Seed", self.seed), ("Stop strings", self.stop_edit)):
            w.setObjectName(f"chatParam_{label.lower().replace(' ', '_')}")
            form.addRow(label, w)
        lay.addLayout(form)
        self.reset_button = named(QPushButton("Defaults"), "chatParamsDefaults", "Reset parameters to defaults")
        lay.addWidget(self.reset_button)
        self.engine = EnginePanel()  # load-time options of this machine, not of the conversation
        lay.addWidget(self.engine)
        lay.addStretch(1)

        self._loading = False
        self.set_params(DEFAULTS)
        for w in (self.temperature, self.top_p, self.min_p, self.repeat_penalty):
            w.valueChanged.connect(self._on_edited)
        for w in (self.top_k, self.max_tokens, self.seed):
            w.valueChanged.connect(self._on_edited)
        self.stop_edit.editingFinished.connect(self._on_edited)
        self.system_edit.textChanged.connect(self._on_edited)
        self.reset_button.clicked.connect(self._on_reset)
        self.save_preset_button.clicked.connect(self._on_save_preset)
        self.preset_combo.activated.connect(self._on_preset_chosen)
        self._presets: dict[str, dict] = {}
        self.reload_presets()

    # ------------------------------------------------------------------ values
    def params(self) -> dict:
        stops = [s.strip() for s in self.stop_edit.text().split(",") if s.strip()]
        return {
            "temperature": round(self.temperature.value(), 3),
            "top_p": round(self.top_p.value(), 3),
            "top_k": self.top_k.value(),
            "min_p": round(self.min_p.value(), 3),
            "repeat_penalty": round(self.repeat_penalty.value(), 3),
            "max_tokens": self.max_tokens.value(),
            "seed": self.seed.value(),
            "stop": stops,
        }

    def system_prompt(self) -> str:
        return self.system_edit.toPlainText().strip()

    def set_params(self, params: dict | None, system_prompt: str | None = None) -> None:
        p = dict(DEFAULTS)
        p.update({k: v for k, v in (params or {}).items() if k in DEFAULTS and v is not None})
        self._loading = True
        try:
            self.temperature.setValue(float(p["temperature"]))
            self.top_p.setValue(float(p["top_p"]))
            self.top_k.setValue(int(p["top_k"]))
            self.min_p.setValue(float(p["min_p"]))
            self.repeat_penalty.setValue(float(p["repeat_penalty"]))
            self.max_tokens.setValue(int(p["max_tokens"]))
            self.seed.setValue(int(p["seed"]))
            stop = p["stop"]
            self.stop_edit.setText(", ".join(stop) if isinstance(stop, list) else str(stop or ""))
            if system_prompt is not None:
                self.system_edit.setPlainText(system_prompt)
        finally:
            self._loading = False

    # ------------------------------------------------------------------ presets
    def reload_presets(self) -> None:
        self._presets = load_presets()
        self.preset_combo.clear()
        self.preset_combo.addItem("(choose a preset)")
        for name in sorted(self._presets):
            self.preset_combo.addItem(name)

    def save_preset(self, name: str) -> None:
        presets = load_presets()
        presets[name] = {**self.params(), "system_prompt": self.system_prompt()}
        save_presets(presets)
        self.reload_presets()
        self.preset_combo.setCurrentText(name)

    def apply_preset(self, name: str) -> bool:
        p = self._presets.get(name)
        if p is None:
            return False
        self.set_params(p, p.get("system_prompt", self.system_prompt()))
        self.changed.emit()
        return True

    @Slot()
    def _on_save_preset(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Preset name:")
        if ok and name.strip():
            self.save_preset(name.strip())

    @Slot(int)
    def _on_preset_chosen(self, index: int) -> None:
        if index > 0:
            self.apply_preset(self.preset_combo.itemText(index))

    @Slot()
    def _on_reset(self) -> None:
        self.set_params(DEFAULTS)
        self.changed.emit()

    @Slot()
    def _on_edited(self, *_args) -> None:
        if not self._loading:
            self.changed.emit()
