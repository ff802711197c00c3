"""Images for the local server inside the GUI (issue 15): ``/v1/images/generations`` runs on the
Image Studio's own model thread and engine process (``ctx.model_thread("image")``), queued in
order with the Studio's work, placed by the memory broker beside the chat model as the Studio's
loads are. It has the CLI ImageWorker's interface (server/worker.py): ``generate`` blocks (the
HTTP handler runs it in a worker thread) and returns the PNGs with their parameters.

The request reaches the GUI thread through a queued signal, which submits it to the model
thread; the PNGs come back through a Future. Nothing is written to the gallery: the images go
to the client that asked for them."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import Future

from PySide6.QtCore import QObject, Signal, Slot

from desktop_app.core.errors import AtelierError, Cancelled


class GuiImageWorker(QObject):
    _incoming = Signal(object)

    def __init__(self, ctx, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.served = 0
        self.pending = 0
        self._lock = threading.Lock()
        self._incoming.connect(self._submit)  # queued: emitted from the HTTP handler's thread

    def generate(self, rec, prompt: str, width: int | None, height: int | None, n: int, seed: int | None,
                 token, options: dict | None = None) -> list[tuple[bytes, dict]]:
        from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec

        req = GenerateRequest(model=ModelSpec.for_record(rec, allow_pickle=bool(self.ctx.settings.get("allow_pickle"))),
                              prompt=prompt, width=width, height=height, seed=seed, batch=n, preview=False, **(options or {}),
                              model_sha256=rec.sha256 or "",
                              private_metadata=not self.ctx.settings.get("image_metadata_paths"))
        req.validate()
        fut: Future = Future()
        with self._lock:
            self.pending += 1
        self._incoming.emit((rec, req, token, fut))
        out = fut.result()  # the job always settles it: done, failed, or cancelled at close
        self.served += 1
        return out

    @Slot(object)
    def _submit(self, item) -> None:
        rec, req, req_token, fut = item
        try:
            h = self.ctx.model_thread("image").submit(self._job(rec, req, req_token, fut),
                                                      "An image for the local server")
        except RuntimeError as exc:  # the app is closing
            self._settle(fut, exc=AtelierError(f"Atelier is closing: {exc}"))
            return
        h.progress.connect(self._on_item)
        h.cancelled.connect(lambda: self._settle(fut, exc=AtelierError("The image was cancelled (Atelier closing).")))

    def _on_item(self, item) -> None:
        from desktop_app.core.memory_broker import Moves

        if isinstance(item, Moves):
            self.ctx.apply_moves(item)  # the chat model steps back first; the job waits for it
        elif isinstance(item, dict) and item.get("type") == "loaded":  # the memory meter shows it
            self.ctx.set_loaded("image", f"{item['name']} ({item.get('device', 'cpu')}, {item.get('dtype', '')})",
                                item.get("pid"))
            self.ctx.image_engine_taken.emit(item)  # the Studio's footer and broker moves follow

    def _settle(self, fut: Future, result=None, exc: BaseException | None = None) -> None:
        if fut.done():
            return
        with self._lock:
            self.pending -= 1
        fut.set_exception(exc) if exc is not None else fut.set_result(result)

    def _job(self, rec, req, req_token, fut: Future):
        broker = self.ctx.broker

        def fn(state, token):
            from desktop_app.engines.diffusion import protocol as P
            from desktop_app.ui.studio.jobs import _brokered, _measured, engine_in, note_loaded

            try:
                eng = engine_in(state, None)
                spec = yield from _brokered(state, broker, rec, req.model, token)
                out = []
                for ev in eng.generate(dataclasses.replace(req, model=spec), req_token):
                    if token.cancelled:
                        req_token.cancel()
                    if ev.type == P.RESULT:
                        out.append((ev.image, dict(ev.get("params") or {})))
                    if ev.type == P.LOADED:
                        note_loaded(state, broker, rec, ev.data)
                        yield {"type": "loaded", "name": getattr(rec, "display_name", None) or rec.id, **ev.data}
                    elif ev.type == P.DONE:
                        _measured(broker, ev.get("memory"))
                    elif ev.type == P.ERROR:
                        raise AtelierError(ev.get("message", "The image engine failed."))
                    elif ev.type == P.CANCELLED:
                        raise Cancelled()
                    if ev.terminal:
                        break
                self._settle(fut, out)
            except BaseException as exc:  # noqa: BLE001 - the request says it; the thread lives on
                self._settle(fut, exc=exc if isinstance(exc, AtelierError) else AtelierError(str(exc) or type(exc).__name__))
            return "done"

        return fn

    def stop(self) -> None:
        pass  # the engine is the Studio's: it stops with the app
