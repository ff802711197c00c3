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


def _run_events(events, token, save_dir: Path | None = None, out: Path | None = None):
    """Yield translated items; on cancel, stop yielding, wait for the engine's terminal event, raise."""
    from desktop_app.engines.diffusion import protocol as P

    for ev in events:
        if token.cancelled:
            if not ev.terminal:
                _drain_after_cancel(events, token)
            raise Cancelled()
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


def load_job(spec, provider: EngineProvider | None = None):
    """fn(state, token) that loads ``spec`` (a ModelSpec) in the engine (kept if already loaded)."""

    def job(state, token):
        eng = engine_in(state, provider)
        if not getattr(eng, "alive", False):
            yield E.STARTING
        yield from _run_events(eng.load(spec, token), token)
        return "loaded"

    return job


def generate_job(request, provider: EngineProvider | None = None, save_dir: Path | None = None):
    """fn(state, token) that runs one GenerateRequest and saves every result PNG."""

    def job(state, token):
        eng = engine_in(state, provider)
        if not getattr(eng, "alive", False):
            yield E.STARTING
        yield from _run_events(eng.generate(request, token), token, save_dir)
        return "done"

    return job


def restart_job(provider: EngineProvider | None = None):
    """fn(state, token) that restarts the engine's child process (a fresh process, nothing loaded)."""

    def job(state, token):
        eng = engine_in(state, provider)
        eng.restart()
        return "restarted"

    return job


def unload_job(provider: EngineProvider | None = None):
    """fn(state, token) that frees the loaded pipeline (the engine process stays, empty)."""

    def job(state, token):
        eng = engine_in(state, provider)
        if getattr(eng, "alive", False):
            yield from _run_events(eng.unload(), token)
        return "unloaded"

    return job
