"""The Chat tab's controller: a QObject with no widgets between the chat model's thread and the view,
as GPT4All puts ``Chat`` between ``ChatLLM`` and its QML (STYLE.md).

It owns the chat model's thread, what is loaded or loading, and the one reply in progress. It
loads, starts a reply (saving the empty assistant message first), stops, and queues follow-up
work behind a stopped reply; the view lays out and wires, and reacts to these typed signals:

  load_started(dict)     the plan (name, plan, plan_note, n_gpu_layers), before the weights load
  load_progress(float)   0..1
  loaded(dict)           the engine's info (model_id, n_ctx, template, engine_pid, ...)
  load_failed(str)       load_cancelled()
  reply_delta(str, str)  kind (answer | thinking | reclassify), text
  reply_truncated(dict)  what the overflow policy left out (Truncation.to_dict())
  reply_ended(ReplyEnd)  always once per reply: done, stopped, failed or crashed

Tested without widgets (tests/gui/test_chat_controller.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

from desktop_app.core.memory_broker import Moves
from desktop_app.qt.threads import JobHandle, watch
from desktop_app.ui.chat.jobs import generate_job, load_job

log = logging.getLogger(__name__)


@dataclass
class ReplyEnd:
    """How one reply ended. ``reason``: done (the job ran to its end; ``stats["finish_reason"]``
    says stop, length or cancelled), cancelled (stopped before the engine's last event), error or
    crashed (``error`` holds the exception)."""

    reply_id: int | None
    store: Any
    reason: str
    content: str | None = None
    thinking: str | None = None
    stats: dict = field(default_factory=dict)
    error: BaseException | None = None


class ChatController(QObject):
    load_started = Signal(dict)
    load_progress = Signal(float)
    loaded = Signal(dict)
    load_failed = Signal(str)
    load_cancelled = Signal()
    unloaded = Signal()  # the model was freed on request (Resources › Unload)
    reply_delta = Signal(str, str)
    reply_truncated = Signal(dict)
    reply_ended = Signal(object)  # ReplyEnd

    def __init__(self, ctx, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._thread = None
        self.loaded_model: str | None = None
        self.loading_model: str | None = None
        self.load_error: str | None = None
        self._load: JobHandle | None = None
        self._gen: JobHandle | None = None
        self.reply_id: int | None = None
        self.reply_store: Any = None
        self.reply_first_delta = False
        ctx.register_mover("chat", self.broker_move, restore=self.broker_restore, busy=lambda: self.generating)

    # ------------------------------------------------------------------ state
    @property
    def thread(self):
        """The chat model's long-lived thread (created on first use)."""
        if self._thread is None:
            self._thread = self.ctx.model_thread("chat")
        return self._thread

    @property
    def loading(self) -> bool:
        return self._load is not None

    @property
    def generating(self) -> bool:
        return self._gen is not None

    def _track(self, attr: str, job, what: str, progress, succeeded, failed, cancelled) -> JobHandle:
        """Submit ``job`` as the current load or reply (``attr``); its late events are dropped once
        another job has taken that place."""
        handle = watch(self.thread.submit(job, what), lambda h: h is getattr(self, attr), progress=progress,
                       succeeded=succeeded, failed=failed, cancelled=cancelled)
        setattr(self, attr, handle)
        return handle

    # ------------------------------------------------------------------ loading
    def load(self, model_id: str, n_ctx: int | None = None, placement=None, restore: bool = False) -> JobHandle:
        """Queue a load (the previous model is unloaded first, in the thread); ``placement``: the
        memory broker's Decision when it moves the model (no new plan)."""
        t = self.thread
        if self._load is not None:
            t.cancel(self._load)
        self.loading_model = model_id
        self.load_error = None
        job = load_job(model_id, self.ctx.hardware, n_ctx=n_ctx, broker=self.ctx.broker, placement=placement,
                       restore=restore)
        return self._track("_load", job, "Loading the model",
                           self._on_load_item, self._on_loaded, self._on_load_failed, self._on_load_cancelled)

    def unload(self, stop: bool = True) -> JobHandle:
        """Stop any reply (unless ``stop`` is False: the unload then waits for it), then free the
        chat model's memory; the next message loads it again."""
        if stop:
            self.stop()
        broker = self.ctx.broker

        def job(state, _token):
            engine = state.pop("engine", None)
            state.pop("close", None)
            state.pop("model_id", None)
            broker.unloaded("chat")
            if engine is not None:
                engine.unload()
            return "unloaded"

        self.loaded_model = None
        h = self.thread.submit(job, "Unloading the chat model")
        h.succeeded.connect(lambda _r: self.unloaded.emit())
        return h

    def broker_restore(self) -> JobHandle | None:
        """Plan the loaded model again on its own (it was moved to make room; the others are idle)."""
        if self.loaded_model is None or self.loading or self.generating:
            return None
        return self.load(self.loaded_model, restore=True)

    def broker_move(self, decision) -> JobHandle | None:
        """The memory broker's move (the image model needs the room): load the same model again
        with fewer GPU layers, or unload it. A reply in progress finishes first (jobs run in order)."""
        model = self.loaded_model or self.loading_model
        if model is None:
            return None
        if decision.placement == "unload":
            return self.unload(stop=False)
        return self.load(model, placement=decision)

    def cancel_load(self) -> None:
        if self._load is not None:
            self.thread.cancel(self._load)
            if self._gen is not None:
                self.thread.cancel(self._gen)

    def _on_load_item(self, v) -> None:
        if isinstance(v, Moves):
            self.ctx.apply_moves(v)  # the image model steps back first; the load waits for it
        elif isinstance(v, dict) and v.get("type") == "load_progress":
            self.load_progress.emit(float(v["fraction"]))
        elif isinstance(v, dict) and v.get("type") == "load_started":
            self.load_started.emit(v)

    def _on_loaded(self, info) -> None:
        info = info or {}
        self._load = None
        self.loaded_model = info.get("model_id")
        self.loading_model = None
        self.loaded.emit(info)

    def _on_load_failed(self, exc) -> None:
        self._load = None
        self.loading_model = None
        self.loaded_model = None
        self.load_error = str(exc)
        self.load_failed.emit(str(exc))

    def _on_load_cancelled(self) -> None:
        self._load = None
        self.loading_model = None
        self.loaded_model = None  # the previous model was already unloaded
        self.load_cancelled.emit()

    # ------------------------------------------------------------------ replies
    def start_reply(self, store, conversation_id: int, messages: list[dict], params: dict, model_id: str,
                    overflow: str, n_ctx: int | None = None) -> int:
        """Save an empty assistant message and stream the reply into it; returns its id. Loads
        ``model_id`` first when it is neither loaded nor loading (the thread runs jobs in order)."""
        reply = store.add_message(conversation_id, "assistant", "", model_id=model_id, params=params, finished=False)
        if model_id != self.loaded_model and model_id != self.loading_model:
            self.load(model_id, n_ctx)
        self.reply_id, self.reply_store, self.reply_first_delta = reply.id, store, False
        self._track("_gen", generate_job(store, reply.id, messages, params, overflow), "The reply",
                    self._on_reply_item, self._on_reply_done, self._on_reply_failed, self._on_reply_cancelled)
        return reply.id

    def stop(self) -> None:
        """Stop the reply (it keeps and saves what was written so far)."""
        if self._gen is not None:
            self.thread.cancel(self._gen)

    def after_reply(self, fn: Callable[[], Any], what: str) -> JobHandle:
        """Run ``fn`` in the chat thread after the current (stopped) reply has saved itself: jobs
        there run in order, so no nested event loop has to wait for it."""
        return self.thread.submit(lambda _state, _token: fn(), what)

    def _on_reply_item(self, v) -> None:
        if not isinstance(v, dict):
            return
        if v.get("type") == "delta":
            self.reply_first_delta = True
            self.reply_delta.emit(v["kind"], v["text"])
        elif v.get("type") == "truncated":
            self.reply_truncated.emit(v)

    def _end(self, reason: str, **kw) -> None:
        end = ReplyEnd(self.reply_id, self.reply_store, reason, **kw)
        self._gen, self.reply_id, self.reply_store = None, None, None
        self.reply_ended.emit(end)
        self.ctx.poke_idle()

    def _on_reply_done(self, res) -> None:
        res = res or {}  # the job ran to its end: stats["finish_reason"] says stop, length or cancelled
        self._end("done", content=res.get("content"), thinking=res.get("thinking"), stats=res.get("stats") or {})

    def _on_reply_failed(self, exc) -> None:
        from desktop_app.engines.chat_client import EngineCrashed

        crashed = isinstance(exc, EngineCrashed)
        self._end("crashed" if crashed else "error", stats={"finish_reason": "crashed" if crashed else "error"},
                  error=exc)

    def _on_reply_cancelled(self) -> None:
        self._end("cancelled", stats={"finish_reason": "cancelled"})

    # ------------------------------------------------------------------ life cycle
    def shutdown(self) -> None:
        """Cancel the work and join the chat thread (the reply gets saved)."""
        if self._thread is not None:
            self._thread.cancel()
            self._thread.shutdown()
