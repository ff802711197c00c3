"""The Chat Parameters' engine section (issue 11): how llama.cpp runs the model on this machine:
decode and prompt threads (auto: one per physical core), flash attention (auto), the KV cache
type, adaptive threads and prompt-lookup decoding, and what the loaded model really uses (the
engine's answer, "auto" resolved). Changes are the user's settings; they apply on the next load,
and the tab reloads an idle model at once. It lays out and asks; the tab saves and reloads."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QSpinBox

from desktop_app.core.cpu_threads import FLASH_ATTN_MODES, KV_TYPES, auto_threads
from desktop_app.ui.widgets.named import named


def effective_text(info: dict) -> str:
    """One line: what the loaded model runs with (the engine's info)."""
    if info.get("remote"):
        return f"In use: a team server ({info.get('url', '')}); these options apply to models on this machine."
    if not info.get("n_threads"):
        return "No model loaded."
    auto = " (auto)" if info.get("threads_auto") else ""
    fa = info.get("flash_attn", "off")
    fa_auto = " (auto)" if info.get("flash_attn_setting") == "auto" else ""
    parts = [f"{info['n_threads']} threads{auto}", f"prompt {info.get('n_threads_batch', info['n_threads'])}",
             f"flash attention {fa}{fa_auto}", f"KV {info.get('kv_type', 'f16')}"]
    if info.get("adaptive_threads"):
        parts.append("adaptive threads")
    if info.get("prompt_lookup"):
        parts.append("prompt lookup")
    return "In use: " + " · ".join(parts)


class EnginePanel(QGroupBox):
    changed = Signal(dict)  # {settings key: value}: valid options only

    def __init__(self, parent=None) -> None:
        super().__init__("Engine (this machine)", parent)
        self.setObjectName("chatEnginePanel")
        form = QFormLayout(self)
        n = auto_threads()
        self.threads = named(QSpinBox(), "chatThreads", "Decode threads",
                             f"Threads that generate the reply; auto = {n}, one per physical core")
        self.batch_threads = named(QSpinBox(), "chatBatchThreads", "Prompt threads",
                                   f"Threads that read the prompt; auto = {n}")
        for w in (self.threads, self.batch_threads):
            w.setRange(0, 512)
            w.setSpecialValueText(f"auto ({n})")
        self.flash_attn = named(QComboBox(), "chatFlashAttn", "Flash attention",
                                "auto: on GPUs where llama.cpp has the kernels (faster, less memory); off on the CPU, "
                                "where replies are faster without it once a chat is a few hundred tokens long")
        self.flash_attn.addItems(list(FLASH_ATTN_MODES))
        self.kv_type = named(QComboBox(), "chatKvCache", "KV cache type",
                             "q8_0 halves the context's memory, q4_0 quarters it (slightly less exact); "
                             "needs flash attention")
        self.kv_type.addItems(list(KV_TYPES))
        self.adaptive = named(QCheckBox("Adapt threads to a busy machine"), "chatAdaptiveThreads",
                              "Adaptive threads", "Use fewer threads while another program keeps a core busy")
        self.lookup = named(QCheckBox("Prompt-lookup decoding"), "chatPromptLookup", "Prompt-lookup decoding",
                            "Drafts the reply from the prompt (code, edits): for large models; it computes every "
                            "position's logits, so small models on a CPU get slower (0.75x on the starter)")
        self.problem = named(QLabel(""), "chatEngineProblem")
        self.problem.setWordWrap(True)
        self.problem.hide()
        self.in_use = named(QLabel("No model loaded."), "chatEngineInUse", "Engine settings in use")
        self.in_use.setWordWrap(True)
        form.addRow("Threads", self.threads)
        form.addRow("Prompt threads", self.batch_threads)
        form.addRow("Flash attention", self.flash_attn)
        form.addRow("KV cache", self.kv_type)
        form.addRow(self.adaptive)
        form.addRow(self.lookup)
        form.addRow(self.problem)
        form.addRow(self.in_use)
        self._loading = False
        for w in (self.threads, self.batch_threads):
            w.valueChanged.connect(self._on_edited)
        for w in (self.flash_attn, self.kv_type):
            w.currentIndexChanged.connect(self._on_edited)
        for w in (self.adaptive, self.lookup):
            w.toggled.connect(self._on_edited)

    def values(self) -> dict:
        return {"chat_threads": self.threads.value(), "chat_batch_threads": self.batch_threads.value(),
                "chat_flash_attn": self.flash_attn.currentText(), "chat_kv_cache": self.kv_type.currentText(),
                "chat_adaptive_threads": self.adaptive.isChecked(), "chat_prompt_lookup": self.lookup.isChecked()}

    def set_values(self, settings) -> None:
        self._loading = True
        try:
            self.threads.setValue(int(settings.get("chat_threads") or 0))
            self.batch_threads.setValue(int(settings.get("chat_batch_threads") or 0))
            self.flash_attn.setCurrentText(str(settings.get("chat_flash_attn")))
            self.kv_type.setCurrentText(str(settings.get("chat_kv_cache")))
            self.adaptive.setChecked(bool(settings.get("chat_adaptive_threads")))
            self.lookup.setChecked(bool(settings.get("chat_prompt_lookup")))
        finally:
            self._loading = False

    def show_in_use(self, info: dict) -> None:
        self.in_use.setText(effective_text(info))

    def _on_edited(self, *_a) -> None:
        if self._loading:
            return
        v = self.values()
        if v["chat_kv_cache"] != "f16" and v["chat_flash_attn"] == "off":
            self.problem.setText(f"⚠ A {v['chat_kv_cache']} KV cache needs flash attention (auto or on).")
            self.problem.show()
            return
        self.problem.hide()
        self.changed.emit(v)
