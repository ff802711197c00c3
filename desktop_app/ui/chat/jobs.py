"""Jobs the Chat tab runs in the chat model's thread (``ctx.model_thread("chat")``).

Qt-free on purpose: they only touch the engine (kept in the thread's ``state``) and the history
store (thread-safe), and yield plain dicts that reach the GUI through queued signals.

* ``load_job`` (engines/chat_load.py, shared with the Studio's Enhance prompt): unloads the
  previous engine, plans the load with the fitter and the memory broker, loads with progress.
* ``generate_job``: streams a reply, saving it as it grows (``update_message``, throttled by the
  store) and marking it finished at the end, also after a stop or an error.
"""

from __future__ import annotations

import logging

from desktop_app.core.errors import AtelierError

log = logging.getLogger(__name__)


from desktop_app.engines.chat_load import _name, apply_decision, load_job, resolve_model, where_text  # noqa: E402,F401


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
        except Exception as exc:  # e.g. a team server that vanished mid-reply: kept, marked too
            stats = {"finish_reason": "error", "error": str(exc)[:500]}
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
