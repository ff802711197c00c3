"""The Chat tab: conversation list, message view, input, model picker, parameters, status.

Threads: the model lives in ``ctx.model_thread("chat")``; loading and generation are jobs there
(``desktop_app.ui.chat.jobs``), stopped with ``thread.cancel(job)``. The GUI thread only renders:
deltas are batched by the message view's 40 ms timer. The streaming reply is saved by the job as
it grows; the user's message is committed when it is sent.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QTimer, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QHBoxLayout, QInputDialog, QLabel, QMenu,
    QMessageBox, QProgressBar, QPushButton, QSizePolicy, QSplitter, QToolButton, QVBoxLayout, QWidget,
)

from desktop_app.ui.widgets.throttle import Coalescer
from desktop_app.core.history import HistoryStore, PrivateHistory
from desktop_app.core.starter import STARTER_ID
from desktop_app.ui.chat.controller import ChatController
from desktop_app.ui.chat.sidebar import ConversationSidebar
from desktop_app.ui.chat.jobs import where_text
from desktop_app.ui.chat.message_view import MessageView
from desktop_app.ui.chat.params import ParamsPanel
from desktop_app.ui.chat.input import ChatInput
from desktop_app.ui.widgets.fit import plan_or_error

log = logging.getLogger(__name__)

TITLE_CHARS = 48


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class ChatTab(QWidget):
    # Emitted on the GUI thread when a reply ends (done, stopped or failed): tests and the bench wait on it.
    reply_finished = Signal(object)
    model_loaded = Signal(object)

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("chatTab")
        self.setAccessibleName("Chat")

        # history -------------------------------------------------------------------------
        self._history_error = ""
        try:
            self.store: HistoryStore | None = HistoryStore()
        except Exception as exc:  # noqa: BLE001 - the chat still works, privately
            log.error("history unavailable: %s", exc)
            self.store = None
            self._history_error = str(exc)
        self._private_store: HistoryStore | None = None
        self.private = False
        self.conversation_id: int | None = None

        # model / job state ------------------------------------------------------------------
        # the model's work (load, reply, stop) lives in the controller; this view lays out and wires
        self.controller = ChatController(ctx, self)
        self._gen_t0 = 0.0
        self._gen_first: float | None = None
        self._gen_deltas = 0
        self._retry: tuple | None = None
        self._plan_info: dict = {}
        self._models: list[dict] = []
        self._badge_op = None
        self._shut = False
        self._notices: list[str] = []
        self._sticky_notices: list[str] = []  # history off or recovered: kept across chat switches
        self.n_ctx_override: int | None = None  # None: the fitter's context for this machine

        self._build_ui()
        self._wire()
        if self._history_error:
            self._show_notice(f"Chat history unavailable: {self._history_error} This chat is not saved.", error=True,
                              sticky=True)
            self.set_private(True)
        elif self.store is not None and self.store.recovery_notice:
            self._show_notice(self.store.recovery_notice, error=True, sticky=True)

    # ================================================================== UI
    def _build_ui(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setObjectName("chatSplitter")
        root.addWidget(self.splitter)

        # ---- left: conversations (the panel lays out and asks; this tab does the work)
        self.sidebar = ConversationSidebar()
        sb = self.sidebar
        self.new_button, self.private_button, self.search_edit = sb.new_button, sb.private_button, sb.search_edit
        self.conv_model, self.conv_view, self.private_banner = sb.conv_model, sb.conv_view, sb.private_banner
        self.delete_all_button = sb.delete_all_button
        self.splitter.addWidget(sb)

        # ---- centre
        centre = QWidget()
        cl = QVBoxLayout(centre)
        cl.setContentsMargins(6, 6, 6, 6)
        top = QHBoxLayout()
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("chatModelPicker")
        self.model_combo.setAccessibleName("Chat model")
        self.model_combo.setToolTip("Chat models in your library, with how each fits this machine")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.model_combo.addItem("Starter model (SmolLM2 135M)", STARTER_ID)
        self.params_button = QToolButton()
        self.params_button.setObjectName("chatParamsToggle")
        self.params_button.setText("Parameters")
        self.params_button.setCheckable(True)
        self.params_button.setAccessibleName("Show chat parameters")
        self.params_button.setToolTip("System prompt, sampling and presets for this chat")
        self.export_button = QToolButton()
        self.export_button.setObjectName("chatExport")
        self.export_button.setText("Export")
        self.export_button.setAccessibleName("Export conversation")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        em = QMenu(self.export_button)
        em.addAction("As Markdown…", lambda: self._export("md"))
        em.addAction("As JSON…", lambda: self._export("json"))
        self.export_button.setMenu(em)
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model_combo, 1)
        top.addWidget(self.export_button)
        top.addWidget(self.params_button)
        cl.addLayout(top)

        self.plan_warning = QLabel()
        self.plan_warning.setObjectName("chatPlanWarning")
        self.plan_warning.setWordWrap(True)
        self.plan_warning.hide()
        cl.addWidget(self.plan_warning)
        self.notice = QLabel()
        self.notice.setObjectName("chatNotice")
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice.hide()
        cl.addWidget(self.notice)

        self.view = MessageView()
        cl.addWidget(self.view, 1)

        status = QHBoxLayout()
        self.load_bar = QProgressBar()
        self.load_bar.setObjectName("chatLoadBar")
        self.load_bar.setAccessibleName("Model loading progress")
        self.load_bar.setRange(0, 100)
        self.load_bar.setFormat("Loading model… %p%")
        self.load_bar.setMaximumWidth(260)
        self.load_bar.hide()
        self.cancel_load_button = QToolButton()
        self.cancel_load_button.setObjectName("chatCancelLoad")
        self.cancel_load_button.setText("Cancel")
        self.cancel_load_button.setAccessibleName("Cancel model loading")
        self.cancel_load_button.hide()
        self.status_label = QLabel("")
        self.status_label.setObjectName("chatStatus")
        self.status_label.setAccessibleName("Chat status")
        self.ttft_label = QLabel("")
        self.ttft_label.setObjectName("chatTtft")
        self.ctx_meter = QProgressBar()
        self.ctx_meter.setObjectName("chatContextMeter")
        self.ctx_meter.setAccessibleName("Context used")
        self.ctx_meter.setMinimumWidth(190)
        self.ctx_meter.setMaximumWidth(240)
        self.ctx_meter.setRange(0, 1)
        self.ctx_meter.setValue(0)
        self.ctx_meter.setFormat("context –")
        self.ctx_meter.setToolTip("Tokens of the model's context used by this conversation")
        status.addWidget(self.load_bar)
        status.addWidget(self.cancel_load_button)
        status.addWidget(self.status_label, 1)
        status.addWidget(self.ttft_label)
        status.addWidget(self.ctx_meter)
        cl.addLayout(status)

        inrow = QHBoxLayout()
        self.input = ChatInput()
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("chatSend")
        self.send_button.setAccessibleName("Send message")
        self.send_button.setToolTip("Send (Enter) / Stop (Esc)")
        self.send_button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        inrow.addWidget(self.input, 1)
        inrow.addWidget(self.send_button)
        cl.addLayout(inrow)
        self.splitter.addWidget(centre)

        # ---- right: parameters
        self.params = ParamsPanel()
        self.params.hide()
        self.splitter.addWidget(self.params)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setSizes([240, 900, 260])

    def _wire(self) -> None:
        self._wire_controller()
        sb = self.sidebar
        sb.new_requested.connect(self._on_new)
        sb.private_toggled.connect(self._on_private_toggled)
        sb.search_changed.connect(self.conv_model.set_search)
        sb.open_requested.connect(lambda cid: self.open_conversation(cid) if cid != self.conversation_id else None)
        sb.rename_requested.connect(self.rename_conversation)
        sb.export_requested.connect(lambda fmt, cid: self._export(fmt, cid))
        sb.delete_requested.connect(self.delete_conversation)
        sb.delete_all_requested.connect(self.delete_all_history)
        self.model_combo.activated.connect(self._on_model_chosen)
        self.params_button.toggled.connect(self.params.setVisible)
        self.params.changed.connect(self._on_params_changed)
        self.view.action.connect(self._on_message_action)
        self.input.send_requested.connect(self._on_send_or_stop)
        self.input.stop_requested.connect(self.stop)
        self.send_button.clicked.connect(self._on_send_or_stop)
        self.cancel_load_button.clicked.connect(self.cancel_load)
        for seq, slot in ((QKeySequence("Ctrl+N"), self._on_new), (QKeySequence("Esc"), self.stop)):
            sc = QShortcut(seq, self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
        del_sc = QShortcut(QKeySequence.StandardKey.Delete, self.conv_view)
        del_sc.setContext(Qt.ShortcutContext.WidgetShortcut)
        del_sc.activated.connect(self.sidebar.confirm_delete_selected)
        self._status_timer = Coalescer(250, self._on_status_tick, self, mode="repeat")
        self.ctx.library_changed.connect(self._on_library_changed)
        self.ctx.hardware_ready.connect(self._on_library_changed)
        self.conv_model.set_store(self.store)

    # ================================================================== life cycle
    def start(self) -> None:
        """After the window is shown: focus the message box, read the model list in the background."""
        QTimer.singleShot(0, self._focus_input)
        self._on_library_changed()

        def warm(_token):
            from desktop_app.ui.chat.markdown import warm_up

            warm_up()

        self.ctx.background.run(warm)
        QTimer.singleShot(300, self._warm_render)

    @Slot()
    def _warm_render(self) -> None:
        """Lay out one sample message off-screen while idle: the first real reply then does not pay
        for font matching and the Markdown parser's first use (a visible stall otherwise)."""
        if self._shut:
            return
        from desktop_app.ui.chat.message import MessageWidget

        w = MessageWidget(0, "assistant", "**b** *i* `c` [l](https://example.org)\n\n- a\n\n| a |\n|---|\n| b |\n\n"
                          "```\nx\n```", "t")
        w.resize(600, 400)
        w.grab()
        w.deleteLater()

    def showEvent(self, e) -> None:  # noqa: N802
        super().showEvent(e)
        QTimer.singleShot(0, self._focus_input)

    def _focus_input(self) -> None:
        if self.isVisible() and not self._shut:
            self.input.setFocus(Qt.FocusReason.OtherFocusReason)

    def shutdown(self) -> None:
        """Stop generation, join the chat thread (the reply gets saved), then close the history."""
        if self._shut:
            return
        self._shut = True
        self.view.stop_stream_timer()
        self._status_timer.stop()
        self.sidebar.search_timer.stop()
        if self._badge_op is not None:
            self._badge_op.cancel()
        self.controller.shutdown()
        self.conv_model.set_store(None)
        for st in (self._private_store, self.store):
            if st is not None:
                st.close()
        self._private_store = None

    # ================================================================== stores
    @property
    def active_store(self) -> HistoryStore | None:
        return self._private_store if self.private else self.store

    def set_private(self, on: bool) -> None:
        """Private mode: a new chat in an in-memory history; leaving it throws it away."""
        if on == self.private and (not on or self._private_store is not None):
            return
        self.stop()
        if on:
            self._private_store = PrivateHistory()
            self.private = True
        else:
            self.private = False
            if self._private_store is not None and self.controller.reply_store is not self._private_store:
                self._private_store.close()
            self._private_store = None
        self.private_button.blockSignals(True)
        self.private_button.setChecked(on)
        self.private_button.blockSignals(False)
        self.private_banner.setVisible(on)
        self.conv_view.setEnabled(not on)
        self.search_edit.setEnabled(not on)
        self.delete_all_button.setEnabled(not on and self.store is not None)
        self.new_conversation()

    @Slot(bool)
    def _on_private_toggled(self, on: bool) -> None:
        self.set_private(on)

    # ================================================================== conversations
    @Slot()
    def _on_new(self) -> None:
        if self.private:
            self.stop()
            old, self._private_store = self._private_store, PrivateHistory()  # a fresh private chat
            if old is not None and old is not self.controller.reply_store:
                old.close()
        self.new_conversation()

    def new_conversation(self) -> None:
        """Empty chat; it is created in the history when the first message is sent."""
        self.stop()
        self.conversation_id = None
        self.view.clear()
        self.conv_view.clearSelection()
        self._hide_notice()
        self._set_context(0, 0)
        self._focus_input()

    def open_conversation(self, conversation_id: int) -> None:
        store = self.active_store
        if store is None:
            return
        conv = store.get_conversation(conversation_id)
        if conv is None:
            return
        self.stop()
        self.conversation_id = conversation_id
        self.view.set_messages(store.messages(conversation_id))
        self.params.set_params(conv.params, conv.system_prompt or "")
        if conv.model_id:
            i = self.model_combo.findData(conv.model_id)
            if i >= 0:
                self.model_combo.setCurrentIndex(i)
        self._hide_notice()
        self._set_context(0, 0)
        row = self.conv_model.row_of(conversation_id)
        if row >= 0 and not self.private:
            self.conv_view.selectionModel().setCurrentIndex(
                self.conv_model.index(row), QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self._focus_input()

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        if self.store is None or not title.strip():
            return
        self.store.rename(conversation_id, title.strip())
        self.conv_model.refresh()

    def delete_conversation(self, conversation_id: int) -> None:
        if self.store is None:
            return
        store = self.store
        if conversation_id == self.conversation_id and self.generating:
            # the reply saves itself as it ends: cancel it, then delete in the same model thread,
            # which runs jobs in order (no nested event loop waiting for it here)
            self.stop()
            self.new_conversation()
            h = self.controller.after_reply(lambda: store.delete_conversation(conversation_id),
                                            "Deleting the conversation")
            h.succeeded.connect(lambda _r: self.conv_model.refresh())
            return
        if conversation_id == self.conversation_id:
            self.new_conversation()
        store.delete_conversation(conversation_id)
        self.conv_model.refresh()

    def _export(self, fmt: str, cid: int | None = None) -> None:
        cid = cid if cid is not None else self.conversation_id
        store = self.active_store
        if cid is None or store is None:
            self._show_notice("Nothing to export yet: send a message first.")
            return
        conv = store.get_conversation(cid)
        default = f"{(conv.title if conv else 'chat')[:40].strip() or 'chat'}.{fmt}"
        path, _ = QFileDialog.getSaveFileName(self, "Export conversation", default,
                                              "Markdown (*.md)" if fmt == "md" else "JSON (*.json)")
        if not path:
            return
        text = store.export_markdown(cid) if fmt == "md" else json.dumps(store.export_json(cid), indent=1)
        Path(path).write_text(text, "utf-8")
        self.ctx.status_message.emit(f"Conversation exported to {path}")

    def delete_all_history(self) -> None:
        """Delete every saved conversation (VACUUM in the background so the text is really gone)."""
        if self.store is None:
            return
        self.stop()
        if not self.private:
            self.new_conversation()
        store = self.store
        self.delete_all_button.setEnabled(False)
        self.conv_model.set_store(None)
        # in the chat thread, after the reply that was just stopped has saved itself (jobs run in order)
        self._delete_all_op = self.controller.after_reply(store.delete_all, "Deleting all history")
        self._delete_all_op.succeeded.connect(self._on_deleted_all)
        self._delete_all_op.failed.connect(self._on_deleted_all_failed)

    @Slot(object)
    def _on_deleted_all(self, _result) -> None:
        self.delete_all_button.setEnabled(not self.private)
        self.conv_model.set_store(self.store)
        self.ctx.status_message.emit("All chat history deleted.")
        self.history_cleared = True

    @Slot(object)
    def _on_deleted_all_failed(self, exc) -> None:
        self.delete_all_button.setEnabled(not self.private)
        self.conv_model.set_store(self.store)
        self._show_notice(f"Could not delete the history: {exc}", error=True)

    # ================================================================== models
    @Slot()
    def _on_library_changed(self, *_args) -> None:
        """List chat models and their fit badges in the background (reads GGUF headers)."""
        if self._shut:
            return
        lib, hw = self.ctx.library, self.ctx.hardware

        def work(_token):
            out = []
            for rec in lib.list(task="chat"):
                badge, plan = "", {}
                if hw is not None:
                    p, exc = plan_or_error(rec, hw)
                    if exc is None:
                        badge, plan = p.badge, {"plan": p.plan, "note": getattr(p, "note", "")}
                    else:  # a bad file: say so in the list
                        badge = f"unreadable: {exc}"[:60]
                out.append({"id": rec.id, "name": rec.display_name, "badge": badge, **plan})
            return out

        self._badge_op = self.ctx.background.run(work, self._on_models_listed, self._on_models_failed)

    @Slot(object)
    def _on_models_listed(self, models: list) -> None:
        if self._shut:
            return
        self._models = models
        current = self.model_combo.currentData() or STARTER_ID
        self.model_combo.clear()
        if not any(m["id"] == STARTER_ID for m in models):
            self.model_combo.addItem("Starter model (SmolLM2 135M)", STARTER_ID)
        for m in sorted(models, key=lambda m: (m["id"] != STARTER_ID, m["name"].lower())):
            label = m["name"] + (f"  —  {m['badge']}" if m["badge"] else "")
            self.model_combo.addItem(label, m["id"])
            self.model_combo.setItemData(self.model_combo.count() - 1, m.get("note") or label,
                                         Qt.ItemDataRole.ToolTipRole)
        i = self.model_combo.findData(current)
        self.model_combo.setCurrentIndex(max(0, i))

    @Slot(object)
    def _on_models_failed(self, exc) -> None:
        log.warning("could not list chat models: %s", exc)

    @property
    def chosen_model(self) -> str:
        return self.model_combo.currentData() or STARTER_ID

    @Slot(int)
    def _on_model_chosen(self, _i: int) -> None:
        mid = self.chosen_model
        if self.conversation_id is not None and self.active_store is not None:
            self.active_store.update_conversation(self.conversation_id, model_id=mid)
        if mid != self.controller.loaded_model and not self.controller.generating:
            self.load_model(mid)

    def load_model(self, model_id: str):
        """Queue a load (the previous model is unloaded first, in the thread)."""
        handle = self.controller.load(model_id, self.n_ctx_override)
        self.load_bar.setValue(0)
        self.load_bar.show()
        self.cancel_load_button.show()
        self.status_label.setText("Loading model…")
        return handle

    @Slot()
    def cancel_load(self) -> None:
        self.controller.cancel_load()

    # ================================================================== sending
    @Slot()
    def _on_send_or_stop(self) -> None:
        if self.generating:
            self.stop()
        else:
            self.send()

    @property
    def generating(self) -> bool:
        return self.controller.generating

    def send(self, text: str | None = None) -> bool:
        """Send the message box's text (or ``text``). Returns False when nothing was sent."""
        if self._shut:
            return False
        text = (self.input.toPlainText() if text is None else text).strip()
        if not text or self.generating:
            return False
        store = self.active_store
        if store is None:
            return False
        if self.conversation_id is None or store.get_conversation(self.conversation_id) is None:
            conv = store.create_conversation(_title_from(text), model_id=self.chosen_model,
                                             system_prompt=self.params.system_prompt() or None,
                                             params=self.params.params())
            self.conversation_id = conv.id
            if not self.private:
                self.conv_model.refresh()
                row = self.conv_model.row_of(conv.id)
                if row >= 0:
                    self.conv_view.setCurrentIndex(self.conv_model.index(row))
        msg = store.add_message(self.conversation_id, "user", text, model_id=self.chosen_model)
        self.view.add_message(msg)
        self.input.clear()
        self._focus_input()
        self._start_reply()
        return True

    def _start_reply(self, overflow: str | None = None) -> None:
        store = self.active_store
        cid = self.conversation_id
        if store is None or cid is None:
            return
        params = self.params.params()
        history = [m for m in self.view.messages() if m.role in ("user", "assistant")]
        messages = ([{"role": "system", "content": self.params.system_prompt()}] if self.params.system_prompt() else [])
        messages += [{"role": m.role, "content": m.content} for m in history]
        model = self.chosen_model
        policy = overflow or self.ctx.settings.get("context_overflow") or "truncate_oldest"
        c = self.controller
        needs_load = model != c.loaded_model and model != c.loading_model
        self._gen_t0 = time.monotonic()
        self._gen_first = None
        self._gen_deltas = 0
        reply_id = c.start_reply(store, cid, messages, params, model, policy, self.n_ctx_override)
        if needs_load:  # the controller queued the load before the reply
            self.load_bar.setValue(0)
            self.load_bar.show()
            self.cancel_load_button.show()
        self._hide_notice()
        self.view.begin_stream(reply_id)
        self._set_generating(True)

    @Slot()
    def stop(self) -> None:
        """Stop generation (Esc). The reply keeps what was written so far."""
        self.controller.stop()

    def _set_generating(self, on: bool) -> None:
        self.send_button.setText("Stop" if on else "Send")
        self.send_button.setAccessibleName("Stop generating" if on else "Send message")
        if on:
            self.status_label.setText("generating…")
            self.ttft_label.setText("")
            self._status_timer.start()
        else:
            self._status_timer.stop()

    @Slot()
    def _on_status_tick(self) -> None:
        if self._gen_first is None:
            if not self.controller.loading:
                self.status_label.setText("generating… (reading the prompt)")
            return
        dt = time.monotonic() - self._gen_first
        rate = (self._gen_deltas - 1) / dt if dt > 0.2 and self._gen_deltas > 1 else 0.0
        self.status_label.setText(f"generating… {rate:.0f} tok/s" if rate else "generating…")

    # ================================================================== message actions
    @Slot(str, int)
    def _on_message_action(self, name: str, message_id: int) -> None:
        if name == "copy":
            self.ctx.status_message.emit("Message copied to the clipboard.")
        elif name == "delete":
            self.delete_message(message_id)
        elif name == "regenerate":
            self.regenerate(message_id)
        elif name == "edit":
            old = next((m.content for m in self.view.messages() if m.id == message_id), "")
            text, ok = QInputDialog.getMultiLineText(self, "Edit message",
                                                     "Edit and send again (later messages are removed):", old)
            if ok and text.strip():
                self.edit_and_resend(message_id, text)

    def delete_message(self, message_id: int) -> None:
        if self.generating and message_id == self.controller.reply_id:
            return
        store = self.active_store
        if store is not None:
            store.delete_message(message_id)
        self.view.remove_message(message_id)

    def regenerate(self, message_id: int | None = None) -> bool:
        """Generate the last reply again (the old one is removed)."""
        if self.generating or self.conversation_id is None:
            return False
        msgs = self.view.messages()
        last = next((m for m in reversed(msgs) if m.role == "assistant"), None)
        if last is None or (message_id is not None and last.id != message_id):
            return False
        store = self.active_store
        store.truncate_after(last.id, inclusive=True)
        self.view.truncate_after(last.id, inclusive=True)
        self._start_reply()
        return True

    def edit_and_resend(self, message_id: int, text: str) -> bool:
        """Replace a user message, remove everything after it, and answer again."""
        if self.generating or not text.strip():
            return False
        store = self.active_store
        store.edit_message(message_id, text.strip())
        store.truncate_after(message_id)
        self.view.truncate_after(message_id)
        self.view.update_message(message_id, text.strip())
        self._start_reply()
        return True

    # ================================================================== params
    @Slot()
    def _on_params_changed(self) -> None:
        if self.conversation_id is not None and self.active_store is not None:
            self.active_store.update_conversation(
                self.conversation_id, params=self.params.params(),
                system_prompt=self.params.system_prompt() or None)

    # ================================================================== the controller's signals (GUI thread)
    def _wire_controller(self) -> None:
        c = self.controller
        c.load_started.connect(self._on_load_started)
        c.load_progress.connect(lambda f: self.load_bar.setValue(int(100 * f)))
        c.loaded.connect(self._on_loaded)
        c.load_failed.connect(self._on_load_failed)
        c.load_cancelled.connect(self._on_load_cancelled)
        c.reply_delta.connect(self._on_reply_delta)
        c.reply_truncated.connect(self._on_reply_truncated)
        c.reply_ended.connect(self._on_reply_ended)

    def _on_reply_delta(self, kind: str, text: str) -> None:
        if self._gen_first is None:
            self._gen_first = time.monotonic()
            self.ttft_label.setText(f"TTFT {self._gen_first - self._gen_t0:.2f} s")
        self._gen_deltas += 1
        self.view.stream_delta(kind, text)

    def _on_reply_truncated(self, v: dict) -> None:
        n = v.get("dropped_messages", 0)
        if n:
            s = "s" if n != 1 else ""
            verb = "were" if n != 1 else "was"
            text = f"{n} earlier message{s} no longer fit the model's context and {verb} left out of this reply."
            if v.get("truncated_index") is not None:
                text += f" A long message was also shortened by {v.get('removed_chars', 0):,} characters."
        else:
            text = v.get("notice", "The conversation was shortened to fit the model's context.")
        self._show_notice(text)

    def _on_reply_ended(self, end) -> None:
        from desktop_app.engines.chat_types import ContextOverflow

        if end.reason == "done":
            self._end_reply(end, end.content, end.thinking)
            return
        # stopped before its end, failed or crashed: what was streamed stays (marked); an empty reply goes
        self._end_reply(end, None, None, drop_if_empty=end.reason != "cancelled" or self._gen_first is None)
        exc = end.error
        if end.reason == "crashed":
            self._show_notice(str(exc), error=True)
        elif end.reason == "error":
            if isinstance(exc, ContextOverflow):
                self._ask_overflow(str(exc))
            elif self.controller.load_error:
                self._show_notice(f"Could not load the model: {self.controller.load_error}", error=True)
            else:
                self._show_notice(f"The reply failed: {exc}", error=True)
            log.info("reply %s failed", end.reply_id)

    def _on_load_started(self, v: dict) -> None:
        self._plan_info = v
        self.load_bar.setFormat(f"Loading {v.get('name', 'model')}… %p%")
        self._show_plan(v)

    def _on_loaded(self, info: dict) -> None:
        self.load_bar.hide()
        self.cancel_load_button.hide()
        where = where_text(info.get("plan"), info.get("n_gpu_layers", 0))
        self.ctx.set_loaded("chat", f"{info.get('name', 'chat model')} ({where})")
        self._set_context(0, info.get("n_ctx", 0))
        if not self.generating:
            self.status_label.setText("Ready")
        if info.get("template_error"):
            self._show_notice(info["template_error"], error=True)
        elif info.get("template_fallback"):
            self._show_notice("This model file has no chat template; Atelier uses ChatML, which may not "
                              "match how the model was trained.")
        self.model_loaded.emit(info)

    def _on_load_failed(self, message: str) -> None:
        self.load_bar.hide()
        self.cancel_load_button.hide()
        self.ctx.set_loaded("chat", None)
        self._show_notice(f"Could not load the model: {message}", error=True)
        self.model_loaded.emit({"error": message})

    def _on_load_cancelled(self) -> None:
        self.load_bar.hide()
        self.cancel_load_button.hide()
        self.ctx.set_loaded("chat", None)
        self.status_label.setText("Loading cancelled")

    def _end_reply(self, end, content, thinking, drop_if_empty: bool = False) -> None:
        reply_id, store, stats = end.reply_id, end.store, end.stats
        if self._shut:  # late event after the window closed: the job already saved the reply
            return
        self._set_generating(False)
        if self.view.streaming_id == reply_id:
            self.view.end_stream(content, thinking, stats)
        empty = not (content or thinking) and not any(
            m.content or m.thinking for m in self.view.messages() if m.id == reply_id)
        if drop_if_empty and empty and reply_id is not None:
            if store is not None and store is self.active_store:
                try:
                    store.delete_message(reply_id)
                except Exception:  # noqa: BLE001
                    pass
            self.view.remove_message(reply_id)
        fr = stats.get("finish_reason")
        if stats.get("tokens_per_s"):
            self.status_label.setText(f"{stats['tokens_per_s']:.1f} tok/s · {stats.get('tokens', 0)} tokens"
                                      + (" · stopped" if fr == "cancelled" else ""))
        elif fr == "cancelled":
            self.status_label.setText("Stopped")
        elif fr == "error":
            self.status_label.setText("")
        elif fr == "crashed":
            self.status_label.setText("The chat engine crashed")
        if stats.get("ttft_s") is not None:
            self.ttft_label.setText(f"TTFT {stats['ttft_s']:.2f} s")
        if stats.get("n_ctx"):
            self._set_context(stats.get("context_used", 0), stats["n_ctx"])
        if fr == "length":
            self._show_notice("The reply reached the maximum length (Max tokens in Parameters).")
        if stats.get("template_error"):  # the template hit a limit on this conversation
            self._show_notice(stats["template_error"], error=True)
        if not self.private and store is self.store:
            self.conv_model.refresh()
        self.reply_finished.emit({"message_id": reply_id, **stats})
        self._focus_input()

    def _ask_overflow(self, text: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Question, "Conversation too long", text,
                          QMessageBox.StandardButton.Cancel, self)
        drop = box.addButton("Leave out the oldest messages", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(drop)
        self._overflow_box = box
        box.finished.connect(lambda _r: self._start_reply("truncate_oldest") if box.clickedButton() is drop else None)
        box.open()

    # ================================================================== status helpers
    def _set_context(self, used: int, total: int) -> None:
        if total:
            self.ctx_meter.setRange(0, total)
            self.ctx_meter.setValue(min(used, total))
            self.ctx_meter.setFormat(f"context {used}/{total}")
        else:
            self.ctx_meter.setRange(0, 1)
            self.ctx_meter.setValue(0)
            self.ctx_meter.setFormat("context –")

    def _show_plan(self, info: dict) -> None:
        plan = info.get("plan")
        if plan in ("cpu", "partial"):
            note = info.get("plan_note") or ""
            hw = self.ctx.hardware
            has_gpu = bool(getattr(hw, "gpus", None))
            if plan == "cpu" and not has_gpu:
                text = "Running on the CPU: this machine has no usable GPU."
            elif plan == "cpu":
                text = f"⚠ This model does not fit the GPU: running on the CPU, much slower. {note}".strip()
            else:
                text = f"⚠ Partial GPU offload: some layers run on the CPU, slower than full GPU. {note}".strip()
            self.plan_warning.setText(text)
            self.plan_warning.setProperty("severity", "warning" if has_gpu else "info")
            self.plan_warning.show()
        else:
            self.plan_warning.hide()

    def _show_notice(self, text: str, error: bool = False, sticky: bool = False) -> None:
        """Notices of one reply add up (e.g. old turns left out, then the length limit). A sticky
        one (history off or recovered) stays until the app closes: switching chats keeps it."""
        line = ("⚠ " if error else "ℹ ") + text
        if sticky:
            self._sticky_notices = [n for n in self._sticky_notices if n != line] + [line]
        self._notices = [n for n in self._notices if n != line] + [line]
        self.notice.setText("\n".join(self._notices))
        self.notice.show()

    def _hide_notice(self) -> None:
        self._notices = list(self._sticky_notices)
        if self._notices:
            self.notice.setText("\n".join(self._notices))
            self.notice.show()
            return
        self.notice.hide()
        self.notice.clear()
