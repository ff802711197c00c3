"""Enhance prompt in the Studio: the chat model (the one loaded in the Chat tab, else the starter)
turns the short idea in the prompt box into a prompt and a negative prompt for the selected
model's family (core/prompt_enhance.py), streamed into the boxes.

The work runs in the chat model's thread (``ctx.model_thread("chat")``, behind a reply in
progress); the text reaches the boxes through queued signals, coalesced to one update per 40 ms.
The whole enhancement is ONE undo step in each box (the first update opens an edit block, the
later ones join it), so Ctrl+Z brings the idea back. The idea is kept for the image's metadata
(``Idea:``) while the prompt is the enhanced one.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QPushButton, QToolButton, QVBoxLayout

from desktop_app.core.memory_broker import Moves
from desktop_app.qt.threads import watch
from desktop_app.ui.widgets.named import named
from desktop_app.ui.widgets.throttle import Coalescer

log = logging.getLogger(__name__)
FLUSH_MS = 40


def enhance_job(idea: str, family: str | None, custom: str | None, broker, hardware=None, seed: int | None = None):
    """A chat-thread job: the loaded chat model (or the starter, loaded now) enhances ``idea``.
    Yields load items, Moves, and {"type": "enhance", "prompt", "negative"}; returns the final."""

    def job(state, token):
        from desktop_app.core.prompt_enhance import enhance_stream

        engine = state.get("engine")
        if engine is None:
            from desktop_app.core.starter import STARTER_ID
            from desktop_app.engines.chat_load import load_job

            info = yield from load_job(STARTER_ID, hardware, broker=broker)(state, token)
            yield {**info, "type": "enhance_loaded"}
            engine = state["engine"]
        gen = enhance_stream(engine, idea, family, token, custom, seed)
        while True:
            try:
                prompt, negative = next(gen)
            except StopIteration as stop:
                prompt, negative = stop.value
                return {"type": "enhanced", "prompt": prompt, "negative": negative}
            yield {"type": "enhance", "prompt": prompt, "negative": negative}

    return job


def _replace_all(box, text: str, join: bool) -> None:
    """Replace the box's text as one undo step with the enhancement's earlier updates."""
    cur = QTextCursor(box.document())
    if join:
        cur.joinPreviousEditBlock()
    else:
        cur.beginEditBlock()
    cur.select(QTextCursor.SelectionType.Document)
    cur.insertText(text)
    cur.endEditBlock()


class PromptEnhancer(QObject):
    started = Signal()
    finished = Signal(str)  # done | cancelled | error

    def __init__(self, ctx, params, controller, current_record, parent=None) -> None:
        super().__init__(parent)
        self.ctx, self.params, self.current_record = ctx, params, current_record
        self.button = named(QPushButton("Enhance"), "studioEnhance",
                            "Enhance prompt: the chat model turns your idea into a full prompt")
        self.button.setToolTip("Let the chat model turn the short idea in the prompt box into a full prompt and a "
                               "negative prompt for this model's family (Ctrl+Z undoes it)")
        self.button.clicked.connect(self.toggle)
        self.edit_button = named(QToolButton(), "studioEnhanceInstructions",
                                 "Edit the instructions Enhance prompt gives the chat model")
        self.edit_button.setText("…")
        self.edit_button.setToolTip("Enhance prompt's instructions for this model's family (yours, or the built-in ones)")
        self.edit_button.clicked.connect(lambda: self.edit_instructions().open())
        params.add_prompt_action(self.button)
        params.add_prompt_action(self.edit_button)
        controller.idea_provider = self.idea_for
        self.job = None
        self.idea = ""
        self.enhanced = ""  # the prompt the last enhancement wrote
        self._joined = {"prompt": False, "negative": False}
        self._pending = None
        self._flush = Coalescer(FLUSH_MS, self._apply_pending, self)

    @property
    def busy(self) -> bool:
        return self.job is not None

    def idea_for(self, prompt: str) -> str:
        """The idea behind ``prompt`` when it is (still) the enhanced one, else ""."""
        return self.idea if self.idea and prompt.strip() == self.enhanced.strip() and prompt.strip() else ""

    @Slot()
    def toggle(self) -> None:
        if self.job is not None:
            self.ctx.model_thread("chat").cancel(self.job)
            return
        self.start()

    def start(self):
        from desktop_app.core.errors import AtelierError
        from desktop_app.core.prompt_enhance import check_idea

        if self.job is not None:
            return None
        try:
            idea = check_idea(self.params.prompt.toPlainText())
        except AtelierError as exc:
            self.ctx.status_message.emit(str(exc))
            return None
        rec = self.current_record()
        family = getattr(rec, "family", None)
        from desktop_app.core.prompt_enhance import custom_instructions

        custom = custom_instructions(self.ctx.settings, family)
        self.idea, self.enhanced = idea, ""
        self._joined = {"prompt": False, "negative": False}
        self.params.prompt.setReadOnly(True)
        self.params.negative.setReadOnly(True)
        self.button.setText("Stop")
        job = enhance_job(idea, family, custom, self.ctx.broker, self.ctx.hardware)
        self.job = watch(self.ctx.model_thread("chat").submit(job, "Enhancing the prompt"), lambda h: h is self.job,
                         progress=self._on_item, succeeded=self._on_done, failed=self._on_failed,
                         cancelled=lambda: self._end("cancelled"))
        self.ctx.status_message.emit("Enhancing the prompt…")
        self.started.emit()
        return self.job

    def _on_item(self, item) -> None:
        if isinstance(item, Moves):
            self.ctx.apply_moves(item)
        elif isinstance(item, dict) and item.get("type") == "enhance":
            self._pending = (item["prompt"], item["negative"])
            self._flush.poke()
        elif isinstance(item, dict) and item.get("type") == "enhance_loaded":
            from desktop_app.engines.chat_load import where_text

            where = where_text(item.get("plan"), int(item.get("n_gpu_layers") or 0))
            self.ctx.set_loaded("chat", f"{item.get('name', 'starter')} ({where})", item.get("engine_pid"))

    @Slot()
    def _apply_pending(self) -> None:
        pair, self._pending = self._pending, None
        if pair is None:
            return
        prompt, negative = pair
        if prompt and prompt != self.params.prompt.toPlainText():
            _replace_all(self.params.prompt, prompt, self._joined["prompt"])
            self._joined["prompt"] = True
        if negative and negative != self.params.negative.toPlainText():
            _replace_all(self.params.negative, negative, self._joined["negative"])
            self._joined["negative"] = True

    def _on_done(self, result) -> None:
        result = result or {}
        self._pending = (result.get("prompt") or "", result.get("negative") or "")
        self._apply_pending()
        self.enhanced = self.params.prompt.toPlainText()
        self._end("done")

    def _on_failed(self, exc) -> None:
        self.ctx.status_message.emit(f"Enhance prompt failed: {exc}")
        self._end("error")

    def _end(self, how: str) -> None:
        if how != "done":
            self._apply_pending()
            self.enhanced = self.params.prompt.toPlainText() if self._joined["prompt"] else ""
        self.job = None
        self.params.prompt.setReadOnly(False)
        self.params.negative.setReadOnly(False)
        self.button.setText("Enhance")
        if how == "done":
            self.ctx.status_message.emit("Prompt enhanced (Ctrl+Z in the prompt box brings your idea back).")
        self.finished.emit(how)

    def edit_instructions(self) -> QDialog:
        """A dialog with the instructions for the current model's style; OK saves them (Settings
        ``enhance_system_prompts``), *Built-in* puts the shipped ones back."""
        from desktop_app.core.prompt_enhance import custom_instructions, style_for, system_prompt

        family = getattr(self.current_record(), "family", None)
        style = style_for(family)
        dlg = QDialog(self.button.window())
        dlg.setObjectName("enhanceInstructionsDialog")
        dlg.setWindowTitle("Enhance prompt: instructions")
        lay = QVBoxLayout(dlg)
        words = "tags (Stable Diffusion 1.5, 2, XL)" if style == "tags" else "sentences (SD 3.5, FLUX)"
        lay.addWidget(QLabel(f"What the chat model is told when it writes {words}:"))
        dlg.editor = named(QPlainTextEdit(system_prompt(family, custom_instructions(self.ctx.settings, family))),
                           "enhanceInstructionsEdit", "Enhance prompt instructions")
        lay.addWidget(dlg.editor)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        builtin = box.addButton("Built-in", QDialogButtonBox.ButtonRole.ResetRole)
        builtin.clicked.connect(lambda: dlg.editor.setPlainText(system_prompt(family)))
        box.accepted.connect(dlg.accept)
        box.rejected.connect(dlg.reject)
        lay.addWidget(box)

        def save() -> None:
            stored = dict(self.ctx.settings.get("enhance_system_prompts") or {})
            text = dlg.editor.toPlainText().strip()
            if not text or text == system_prompt(family):
                stored.pop(style, None)  # the built-in ones (they may improve with a new version)
            else:
                stored[style] = text[:4000]
            try:
                self.ctx.settings.set("enhance_system_prompts", stored)
            except Exception as exc:  # noqa: BLE001 - a read-only settings file: say so
                self.ctx.status_message.emit(f"Could not save the instructions: {exc}")

        dlg.accepted.connect(save)
        dlg.resize(560, 300)
        return dlg

    def shutdown(self) -> None:
        if self.job is not None:
            self.ctx.model_thread("chat").cancel(self.job)
