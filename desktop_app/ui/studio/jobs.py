"""Jobs that run IN the studio's model thread ("image"): they drive the diffusion engine's child
process through its blocking client and yield small, ready-to-show items to the GUI thread.

Nothing here touches a widget. Images are decoded into QImage here (QImage is safe off the GUI
thread), results are written to the images folder here, so the GUI thread only swaps pixmaps.

Items yielded: the dataclasses of :mod:`desktop_app.ui.studio.events` (Loaded, Progress, Preview,
Result, Notice, EngineError, Status); an EngineError ends the job (kind "crashed" → offer a restart).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from PySide6.QtGui import QImage

from desktop_app.core.errors import Cancelled
from desktop_app.ui.studio import events as E

log = logging.getLogger(__name__)

EngineProvider = Callable[[], tuple[object, bool]]  # -> (EngineProcess, owned)


def default_provider() -> tuple[object, bool]:
    from desktop_app.engines.diffusion.client import EngineProcess

    return EngineProcess(), True


def engine_in(state: dict, provider: EngineProvider | None) -> object:
    """The thread's engine client (created on first use; released at thread shutdown if owned)."""
    eng = state.get("engine")
    if eng is None:
        eng, owned = (provider or default_provider)()
        state["engine"] = eng
        state["close"] = eng.stop if owned else (lambda: None)
    return eng


def _drain_after_cancel(events, token) -> None:
    """Keep reading the engine's events until its terminal one (the child confirms the cancel)."""
    for ev in events:
        if ev.terminal:
            break


def _stage_text(ev) -> str:
    """Post-processing says what it does ("Tile 3/12", "Inference 2/3"); generation shows steps."""
    stage = ev.get("stage") or ""
    if not stage:
        return ""
    return f"{'Tile' if stage == 'tile' else stage.capitalize()} {ev.get('step', 0)}/{ev.get('total', 0)}"


def _translate(ev, save_dir: Path | None, out: Path | None = None):
    """One engine event as the item the view gets. A RESULT's PNG (encoded once, with its
    metadata, in the child) is written as it came: to ``out`` when given, else a new gallery name."""
    from desktop_app.engines.diffusion import protocol as P

    if ev.type == P.PROGRESS:
        return E.Progress(ev.get("step", 0), ev.get("total", 0), ev.get("it_s"), ev.get("image_index", 0),
                          ev.get("batch", 1), _stage_text(ev))
    if ev.type == P.PREVIEW:
        return E.Preview(QImage.fromData(ev.image or b""), ev.get("step", 0), ev.get("total", 0))
    if ev.type == P.RESULT:
        from desktop_app.ui.studio.gallery import new_image_path

        params = dict(ev.get("params") or {})
        path = out or new_image_path(f"{params.get('seed', '')}")
        if save_dir is not None and out is None:
            save_dir.mkdir(parents=True, exist_ok=True)
            path = save_dir / path.name
        path.write_bytes(ev.image or b"")
        return E.Result(path, params, QImage.fromData(ev.image or b""))
    if ev.type == P.LOADED:
        return E.Loaded(dict(ev.data))
    if ev.type == P.NOTICE:
        return E.Notice(ev.get("kind", ""), ev.get("message", ""))
    if ev.type == P.ERROR:
        return E.EngineError(ev.get("kind", "internal"), ev.get("message", "The image engine failed."))
    return None


def _run_events(events, token, save_dir: Path | None = None, out: Path | None = None, on_done=None):
    """Yield translated items; on cancel, stop yielding, wait for the engine's terminal event, raise."""
    from desktop_app.engines.diffusion import protocol as P

    for ev in events:
        if token.cancelled:
            if not ev.terminal:
                _drain_after_cancel(events, token)
            raise Cancelled()
        if ev.type == P.DONE and on_done is not None:
            on_done(ev)
        if ev.type in (P.DONE, P.UNLOADED, P.PONG):
            continue
        if ev.type == P.CANCELLED:
            raise Cancelled()
        item = _translate(ev, save_dir, out)
        if item is not None:
            yield item
        if ev.terminal:
            break
    if token.cancelled:
        raise Cancelled()


def _brokered(state: dict, broker, rec, spec, token, restore: bool = False):
    """The spec to load, with the memory broker's placement (core/memory_broker.py): planned
    beside what the other slots hold, after the GUI moved them (a yielded Moves waits for that).
    A spec that already carries a placement (a broker move) or a model already placed is kept."""
    import dataclasses

    if broker is None or rec is None:
        return spec
    if spec.placement:
        state["brokered"] = (spec.path, spec.placement)
        state["moved"] = True  # placed by another model's plan
        return spec
    state["moved"] = False
    placed = state.get("brokered")
    if placed and placed[0] == spec.path:
        return dataclasses.replace(spec, placement=placed[1])
    from desktop_app.core.memory_broker import demand_for_record

    demand = demand_for_record(rec)
    decision = yield from broker.before_load("image", demand, token, restore=restore)
    state["demand"] = demand
    state["brokered"] = (spec.path, decision.mode)
    return dataclasses.replace(spec, placement=decision.mode)


def _track(state: dict, broker, items, rec=None):
    """Pass the items on; tell the broker what loaded and what the engine measured."""
    for item in items:
        if isinstance(item, E.Loaded):
            note_loaded(state, broker, rec, item.data)
        yield item


def note_loaded(state: dict, broker, rec, data: dict) -> None:
    """Tell the broker that ``rec`` loaded (its demand, where the engine put it, what it measured):
    for the Studio's loads and for the local server's images on the same engine."""
    if broker is None or rec is None:
        return
    from desktop_app.core.memory_broker import demand_for_record

    demand = state.get("demand")
    if demand is None or demand.id != getattr(rec, "id", None):
        demand = state["demand"] = demand_for_record(rec)
    broker.loaded("image", demand, str(data.get("plan") or "cpu"), moved=bool(state.get("moved")))
    _measured(broker, data.get("memory"))


def _measured(broker, memory) -> None:
    if broker is not None and isinstance(memory, dict):
        broker.measured("image", int(memory.get("rss_bytes") or 0), int(memory.get("cuda_reserved_bytes") or 0))


def load_job(spec, provider: EngineProvider | None = None, broker=None, rec=None, replan: bool = False):
    """fn(state, token) that loads ``spec`` (a ModelSpec) in the engine (kept if already loaded);
    with a ``broker``, where the memory broker places it beside the other loaded models
    (``replan``: plan again although it is placed, to bring it back after a move)."""

    def job(state, token):
        eng = engine_in(state, provider)
        if replan:
            state.pop("brokered", None)
        if not getattr(eng, "alive", False):
            yield E.STARTING
        s = yield from _brokered(state, broker, rec, spec, token, restore=replan)
        yield from _track(state, broker, _run_events(eng.load(s, token), token), rec)
        return "loaded"

    return job


def generate_job(request, provider: EngineProvider | None = None, save_dir: Path | None = None, broker=None,
                 rec=None):
    """fn(state, token) that runs one GenerateRequest and saves every result PNG. Out of memory
    (after the engine's own lighter retry): the broker's next step (the other models step back),
    then one more try."""
    import dataclasses

    def job(state, token):
        eng = engine_in(state, provider)
        if not getattr(eng, "alive", False):
            yield E.STARTING
        spec = yield from _brokered(state, broker, rec, request.model, token)
        req = dataclasses.replace(request, model=spec)
        for attempt in (1, 2):
            oom = None
            for item in _track(state, broker, _run_events(eng.generate(req, token), token, save_dir,
                                                          on_done=lambda ev: _measured(broker, ev.get("memory"))), rec):
                if isinstance(item, E.EngineError) and item.kind == "oom" and attempt == 1 and broker is not None:
                    oom = item
                    continue
                yield item
            if oom is None:
                return "done"
            moves = broker.after_oom("image")
            if moves is None:
                yield oom
                return "done"
            yield moves
            from desktop_app.core.memory_broker import wait_for

            wait_for(moves.gate, token)
            yield E.Notice("oom_broker", "Out of memory: " + " ".join(moves.plan.messages) + " Generating again.")
        return "done"

    return job


def restart_job(provider: EngineProvider | None = None):
    """fn(state, token) that restarts the engine's child process (a fresh process, nothing loaded)."""

    def job(state, token):
        eng = engine_in(state, provider)
        state.pop("brokered", None)
        eng.restart()
        return "restarted"

    return job


def unload_job(provider: EngineProvider | None = None, broker=None):
    """fn(state, token) that frees the loaded pipeline (the engine process stays, empty)."""

    def job(state, token):
        eng = engine_in(state, provider)
        state.pop("brokered", None)
        if broker is not None:
            broker.unloaded("image")
        if getattr(eng, "alive", False):
            yield from _run_events(eng.unload(), token)
        return "unloaded"

    return job


# --- a team server's image model (another Atelier's ``atelier serve``; issue 15) -------------------
def remote_record(entry: dict):
    """A picker entry of core/remotes.remote_entries("image") as the Studio's model record."""
    from desktop_app.core.library import ModelRecord

    return ModelRecord(id=entry["id"], task="image", format="remote", path=entry["id"], size_bytes=0,
                       name=f"{entry['model']} on {entry['server']}", source="remote",
                       extra={"server": entry["server"], "model": entry["model"], "url": entry["url"]})


def _server_of(rec):
    from desktop_app.core.remotes import resolve

    return resolve(rec.extra["server"]), rec.extra["model"]


def remote_load_job(rec, broker=None):
    """fn(state, token): nothing to load here (a pipeline this machine held is freed); check that
    the server answers and still lists the model."""

    def job(state, token):
        from desktop_app.core.errors import AtelierError

        if state.get("engine") is not None:
            yield from unload_job(None, broker)(state, token)
        elif broker is not None:
            broker.unloaded("image")
        server, model = _server_of(rec)
        if not any(m == model and t == "image" for m, t in server.model_entries()):
            raise AtelierError(f"The server {server.name} no longer makes images with {model}. "
                               "Refresh it in Models › Servers.")
        yield E.Loaded({"model": rec.path, "device": "remote server", "dtype": "", "remote": True})
        return "loaded"

    return job


def remote_generate_job(rec, p: dict, save_dir: Path | None = None):
    """fn(state, token): the Studio's settings as one request to the server; each PNG it sends
    (with the parameters the server's engine wrote into it) is saved to the gallery here."""

    def job(state, token):
        from desktop_app.engines.diffusion.metadata import parse_parameters
        from desktop_app.engines.remote_chat import remote_images
        from desktop_app.ui.studio.gallery import new_image_path

        from desktop_app.core.image_presets import apply_style

        server, model = _server_of(rec)
        prompt, negative = apply_style(p["prompt"], p["negative"], p.get("style") or "None")
        yield E.Status(f"Generating on {server.name} ({model})…")
        pngs = remote_images(server, model, prompt, token, negative_prompt=negative or None,
                             size=f"{int(p['width'])}x{int(p['height'])}", n=int(p["batch"]), seed=p.get("seed"),
                             steps=int(p["steps"]), guidance_scale=float(p["guidance"]))
        for i, png in enumerate(pngs):
            path = new_image_path(f"remote-{i}")
            if save_dir is not None:
                save_dir.mkdir(parents=True, exist_ok=True)
                path = save_dir / path.name
            path.write_bytes(png)
            try:
                params = parse_parameters(png) or {}
            except Exception:  # noqa: BLE001 - another server's PNG may carry none
                params = {}
            yield E.Result(path, {**params, "remote": f"{server.name}/{model}"}, QImage.fromData(png))
        return "done"

    return job
