"""The Chat tab: conversation list, message view, input, model picker, parameters, status.

Threads: the model lives in ``ctx.model_thread("chat")``; loading and generation are jobs there
(``desktop_app.ui.chat.jobs``), stopped with ``thread.cancel(job)``. The GUI thread only renders:
deltas are batched by the message view's 40 ms timer. The streaming reply is saved by the job as
it grows; the user's message is committed when it is sent.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QItemSelectionModel, QTimer, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout, QMessageBox, QPushButton, QSizePolicy, QSplitter, QVBoxLayout, QWidget,
)

from desktop_app.core.history import HistoryStore
from desktop_app.ui.chat.actions import MessageActions
from desktop_app.ui.chat.imagine import ChatImagine, imagine_command
from desktop_app.ui.chat.controller import ChatController
from desktop_app.ui.chat.export import export_conversation
from desktop_app.ui.chat.session import ChatStores, title_from
from desktop_app.ui.chat.header import ChatHeader, list_chat_models
from desktop_app.ui.chat.status import ChatNotices, ChatStatusRow, truncation_text
from desktop_app.ui.chat.sidebar import ConversationSidebar
from desktop_app.ui.chat.jobs import where_text
from desktop_app.ui.chat.message_view import MessageView
from desktop_app.ui.chat.message import warm_render
from desktop_app.ui.chat.params import ParamsPanel
from desktop_app.ui.chat.input import ChatInput
from desktop_app.ui.widgets.icons import themed
from desktop_app.ui.widgets.named import named

log = logging.getLogger(__name__)

class ChatTab(MessageActions, ChatImagine, QWidget):
    # Emitted on the GUI thread when a reply ends (done, stopped or failed): tests and the bench wait on it.
    reply_finished = Signal(object)
    model_loaded = Signal(object)

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("chatTab")
        self.setAccessibleName("Chat")

        # history -------------------------------------------------------------------------
        self.stores = ChatStores()
        self.conversation_id: int | None = None

        # model / job state ------------------------------------------------------------------
        # the model's work (load, reply, stop) lives in the controller; this view lays out and wires
        self.controller = ChatController(ctx, self)
        self._badge_op = None
        self._shut = False
        self.n_ctx_override: int | None = None  # None: the fitter's context for this machine

        self._build_ui()
        self._wire()
        if self.stores.policy_note:
            self.notices.show_notice(self.stores.policy_note, sticky=True)
            self.set_private(True)
            self.sidebar.lock_private(self.stores.policy_note)
        elif self.stores.error:
            self.notices.show_notice(f"Chat history unavailable: {self.stores.error} This chat is not saved.",
                                     error=True, sticky=True)
            self.set_private(True)
        elif self.store is not None and self.store.recovery_notice:
            self.notices.show_notice(self.store.recovery_notice, error=True, sticky=True)

    # ================================================================== UI
    def _build_ui(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        self.splitter = named(QSplitter(Qt.Orientation.Horizontal, self), "chatSplitter")
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
        self.header = ChatHeader()
        self.model_combo = self.header.model_combo
        self.params_button, self.export_button = self.header.params_button, self.header.export_button
        cl.addWidget(self.header)

        self.notices = ChatNotices()
        self.plan_warning, self.notice = self.notices.plan_warning, self.notices.notice
        cl.addWidget(self.notices)

        self.view = MessageView()
        cl.addWidget(self.view, 1)

        self.status_row = sr = ChatStatusRow()
        sr.loading = lambda: self.controller.loading
        self.load_bar, self.cancel_load_button, self.status_label = sr.load_bar, sr.cancel_load_button, sr.status_label
        self.ttft_label, self.ctx_meter = sr.ttft_label, sr.ctx_meter
        cl.addWidget(sr)

        inrow = QHBoxLayout()
        self.input = ChatInput()
        self.send_button = named(QPushButton("Send"), "chatSend", "Send message", "Send (Enter) / Stop (Esc)")
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
        sb.private_toggled.connect(self.set_private)
        sb.search_changed.connect(self.conv_model.set_search)
        sb.open_requested.connect(lambda cid: self.open_conversation(cid) if cid != self.conversation_id else None)
        sb.rename_requested.connect(self.rename_conversation)
        sb.export_requested.connect(lambda fmt, cid: self._export(fmt, cid))
        sb.delete_requested.connect(self.delete_conversation)
        sb.delete_all_requested.connect(self.delete_all_history)
        self.model_combo.activated.connect(self._on_model_chosen)
        self.header.export_requested.connect(self._export)
        self.params_button.toggled.connect(self.params.setVisible)
        self.params.changed.connect(self._on_params_changed)
        self.params.engine.set_values(self.ctx.settings)
        self.params.engine.changed.connect(self._on_engine_changed)
        self.view.action.connect(self._on_message_action)
        self.input.send_requested.connect(self._on_send_or_stop)
        self.input.stop_requested.connect(self.stop)
        self.send_button.clicked.connect(self._on_send_or_stop)
        self.status_row.cancel_load_requested.connect(self.controller.cancel_load)
        for seq, slot in ((QKeySequence("Ctrl+N"), self._on_new), (QKeySequence("Esc"), self.stop)):
            sc = QShortcut(seq, self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
        del_sc = QShortcut(QKeySequence.StandardKey.Delete, self.conv_view)
        del_sc.setContext(Qt.ShortcutContext.WidgetShortcut)
        del_sc.activated.connect(self.sidebar.confirm_delete_selected)
        self.ctx.library_changed.connect(self._on_library_changed)
        self.ctx.remotes_changed.connect(self._on_library_changed)
        self.ctx.hardware_ready.connect(self._on_library_changed)
        self.notices.retry_requested.connect(lambda: self.controller.load(self.chosen_model))
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
        if not self._shut:
            warm_render()

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
        self.status_row.stop_timers()
        self.sidebar.search_timer.stop()
        if self._badge_op is not None:
            self._badge_op.cancel()
        self.controller.shutdown()
        self.conv_model.set_store(None)
        self.stores.close()

    # ================================================================== stores
    @property
    def store(self) -> HistoryStore | None:
        """The saved history (None when it could not be opened)."""
        return self.stores.saved

    @property
    def private(self) -> bool:
        return self.stores.private

    @property
    def active_store(self) -> HistoryStore | None:
        return self.stores.active

    def set_private(self, on: bool) -> None:
        """Private mode: a new chat in an in-memory history; leaving it throws it away."""
        if on == self.private and (not on or self.stores.private_store is not None):
            return
        self.stop()
        self.stores.set_private(on, in_use=self.controller.reply_store)
        self.sidebar.show_private(on, history_saved=self.store is not None)
        self.new_conversation()

    # ================================================================== conversations
    @Slot()
    def _on_new(self) -> None:
        if self.private:
            self.stop()
            self.stores.fresh_private(in_use=self.controller.reply_store)
        self.new_conversation()

    def new_conversation(self) -> None:
        """Empty chat; it is created in the history when the first message is sent."""
        self.stop()
        self.conversation_id = None
        self.view.clear()
        self.conv_view.clearSelection()
        self.notices.clear_notices()
        self.status_row.clear_reply()
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
            self.header.select_model(conv.model_id)
        self.notices.clear_notices()
        self.status_row.clear_reply(self.view.messages())  # this chat's own context use, if known
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
            self.notices.show_notice("Nothing to export yet: send a message first.")
            return
        export_conversation(self, store, cid, fmt, self.ctx.background, self.ctx.status_message.emit,
                            lambda text: self.notices.show_notice(text, error=True))

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
        self._delete_all_op.succeeded.connect(lambda _r: self._after_delete_all(None))
        self._delete_all_op.failed.connect(self._after_delete_all)

    def _after_delete_all(self, exc) -> None:
        self.delete_all_button.setEnabled(not self.private)
        self.conv_model.set_store(self.store)
        if exc is None:
            self.ctx.status_message.emit("All chat history deleted.")
            self.history_cleared = True
        else:
            self.notices.show_notice(f"Could not delete the history: {exc}", error=True)

    # ================================================================== models
    @Slot()
    def _on_library_changed(self, *_args) -> None:
        """List chat models and their fit badges in the background (reads GGUF headers)."""
        if self._shut:
            return
        lib, hw, settings = self.ctx.library, self.ctx.hardware, self.ctx.settings
        self._badge_op = self.ctx.background.run(lambda _t: list_chat_models(lib, hw, settings), self._on_models_listed,
                                                 lambda exc: log.warning("could not list chat models: %s", exc))

    @Slot(object)
    def _on_models_listed(self, models: list) -> None:
        if not self._shut:
            self.header.set_models(models)

    @property
    def chosen_model(self) -> str:
        return self.header.chosen_model

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
        self.status_row.show_loading()
        self.status_label.setText("Loading model…")
        return handle

    # ================================================================== sending
    @Slot()
    def _on_send_or_stop(self) -> None:
        self.stop() if self.generating else self.send()

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
        if imagine_command(text) is not None:  # /imagine: the Image Studio answers (imagine.py)
            return self.imagine(imagine_command(text), user_text=text)
        if self.conversation_id is None or store.get_conversation(self.conversation_id) is None:
            self._new_conversation_for(text)
        msg = store.add_message(self.conversation_id, "user", text, model_id=self.chosen_model)
        self.view.add_message(msg)
        self.input.clear()
        self._focus_input()
        self._start_reply()
        return True

    def _new_conversation_for(self, text: str) -> None:
        store = self.active_store
        conv = store.create_conversation(title_from(text), model_id=self.chosen_model,
                                         system_prompt=self.params.system_prompt() or None, params=self.params.params())
        self.conversation_id = conv.id
        if not self.private:
            self.conv_model.refresh()
            row = self.conv_model.row_of(conv.id)
            if row >= 0:
                self.conv_view.setCurrentIndex(self.conv_model.index(row))

    def _start_reply(self, overflow: str | None = None) -> None:
        store = self.active_store
        cid = self.conversation_id
        if store is None or cid is None:
            return
        params = self.params.params()
        history = [m for m in self.view.messages() if m.role in ("user", "assistant") and not m.is_imagine]
        messages = ([{"role": "system", "content": self.params.system_prompt()}] if self.params.system_prompt() else [])
        messages += [{"role": m.role, "content": m.content} for m in history]
        model = self.chosen_model
        policy = overflow or self.ctx.settings.get("context_overflow") or "truncate_oldest"
        c = self.controller
        needs_load = model != c.loaded_model and model != c.loading_model
        reply_id = c.start_reply(store, cid, messages, params, model, policy, self.n_ctx_override)
        if needs_load:  # the controller queued the load before the reply
            self.status_row.show_loading()
        self.notices.clear_notices()
        self.view.begin_stream(reply_id)
        self._set_generating(True)

    @Slot()
    def stop(self) -> None:
        """Stop generation (Esc). The reply keeps what was written so far."""
        self.controller.stop()

    def _set_generating(self, on: bool) -> None:
        self.send_button.setText("Stop" if on else "Send")
        themed(self.send_button, "circle-stop" if on else "send")
        self.send_button.setAccessibleName("Stop generating" if on else "Send message")
        if on:
            self.status_row.reply_started()
        else:
            self.status_row.reply_stopped()

    # ================================================================== params
    def _on_engine_changed(self, values: dict) -> None:
        """Engine options are the user's settings; an idle loaded model is loaded again with them."""
        for key, value in values.items():
            self.ctx.settings.set(key, value)
        c = self.controller
        if c.loaded_model and not c.generating and not c.loading:
            self.load_model(c.loaded_model)

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
        c.load_progress.connect(self.status_row.set_load_progress)
        c.loaded.connect(self._on_loaded)
        c.load_failed.connect(self._on_load_failed)
        c.load_cancelled.connect(self._on_load_cancelled)
        c.reply_delta.connect(self._on_reply_delta)
        c.reply_truncated.connect(lambda v: self.notices.show_notice(truncation_text(v)))
        c.reply_ended.connect(self._on_reply_ended)
        c.unloaded.connect(lambda: (self.ctx.set_loaded("chat", None), self.status_label.setText(
            "Model unloaded: it loads again with your next message.")))

    def _on_reply_delta(self, kind: str, text: str) -> None:
        if self.view.streaming_id is None:  # a late token of a reply whose chat the user left
            return
        self.status_row.delta()
        self.view.stream_delta(kind, text)

    def _on_reply_ended(self, end) -> None:
        from desktop_app.engines.chat_types import ContextOverflow

        if end.reason == "done":
            self._end_reply(end, end.content, end.thinking)
            return
        # stopped before its end, failed or crashed: what was streamed stays (marked); an empty reply goes
        nothing_came = self.status_row.first_delta_at is None
        self._end_reply(end, None, None, drop_if_empty=end.reason != "cancelled" or nothing_came)
        exc = end.error
        if end.reason == "crashed":
            self.notices.show_notice(str(exc), error=True)
        elif end.reason == "error":
            if isinstance(exc, ContextOverflow):
                self._ask_overflow(str(exc))
            elif self.controller.load_error:
                self.notices.show_notice(f"Could not load the model: {self.controller.load_error}", error=True,
                                         retry=True)
            else:
                from desktop_app.engines.remote_chat import RemoteError

                self.notices.show_notice(f"The reply failed: {exc}", error=True, retry=isinstance(exc, RemoteError))
            log.info("reply %s failed", end.reply_id)

    def _on_load_started(self, v: dict) -> None:
        self.load_bar.setFormat(f"Loading {v.get('name', 'model')}… %p%")
        self.notices.show_plan(v, has_gpu=bool(getattr(self.ctx.hardware, "gpus", None)))

    def _on_loaded(self, info: dict) -> None:
        self.status_row.hide_loading()
        where = where_text(info.get("plan"), info.get("n_gpu_layers", 0))
        self.ctx.set_loaded("chat", f"{info.get('name', 'chat model')} ({where})", info.get("engine_pid"))
        self.params.engine.show_in_use(info)
        self.status_row.set_context(0, info.get("n_ctx", 0))
        if not self.generating:
            self.status_label.setText("Ready")
        if info.get("template_error"):
            self.notices.show_notice(info["template_error"], error=True)
        elif info.get("template_fallback"):
            self.notices.show_notice("This model file has no chat template; Atelier uses ChatML, which may not "
                              "match how the model was trained.")
        self.model_loaded.emit(info)

    def _on_load_failed(self, message: str) -> None:
        self.status_row.hide_loading()
        self.ctx.set_loaded("chat", None)
        self.notices.show_notice(f"Could not load the model: {message}", error=True, retry=True)
        self.model_loaded.emit({"error": message})

    def _on_load_cancelled(self) -> None:
        self.status_row.hide_loading()
        self.ctx.set_loaded("chat", None)
        self.status_label.setText("Loading cancelled")

    def _end_reply(self, end, content, thinking, drop_if_empty: bool = False) -> None:
        reply_id, store, stats = end.reply_id, end.store, end.stats
        if self._shut:  # late event after the window closed: the job already saved the reply
            return
        self._set_generating(False)
        shown = self.view.streaming_id == reply_id  # False when the user switched chats meanwhile
        if shown:
            self.view.end_stream(content, thinking, stats)
        empty = not (content or thinking) and not any(
            m.content or m.thinking for m in self.view.messages() if m.id == reply_id)
        if self._settle_versions(reply_id, store, drop=drop_if_empty and empty):
            empty = False  # a regenerated reply that came to nothing: the answer it replaced is back
        if drop_if_empty and empty and reply_id is not None:
            if store is not None and store is self.active_store:
                try:
                    store.delete_message(reply_id)
                except Exception:  # noqa: BLE001
                    pass
            self.view.remove_message(reply_id)
        if shown:  # another chat's speed, TTFT and context are not this one's
            self.status_row.reply_ended(stats)
        fr = stats.get("finish_reason")
        if fr == "length" and shown:
            self.notices.show_notice("The reply reached the maximum length (Max tokens in Parameters).")
        if stats.get("template_error"):  # the template hit a limit on this conversation
            self.notices.show_notice(stats["template_error"], error=True)
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
