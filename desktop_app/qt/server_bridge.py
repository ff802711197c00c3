"""The OpenAI server inside the GUI (issue 15): requests run on the app's own chat model thread
(``ctx.model_thread("chat")``), queued in order behind the Chat tab's replies, on the model the
Chat tab has loaded when they ask for it (no second copy in memory); asking for another model
loads it there, through the memory broker, as the Chat tab would.

uvicorn runs in its own thread; a request reaches the GUI thread through a queued signal, which
submits it to the model thread; its text goes back to the HTTP handler through the request's
asyncio queue. ``GuiChatWorker`` has the CLI worker's interface (server/worker.py)."""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Signal, Slot

from desktop_app.server.worker import _DONE, run_request

log = logging.getLogger(__name__)


class GuiChatWorker(QObject):
    _incoming = Signal(object)
    loaded = Signal(dict)  # a server request loaded a model in the chat thread (its info)

    def __init__(self, ctx, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.model_id: str | None = None
        self.served = self.cancelled = self.pending = 0
        self.current = None
        self._lock = threading.Lock()
        self._incoming.connect(self._submit)  # queued: submit() is called from uvicorn's thread

    def submit(self, job) -> None:
        with self._lock:
            self.pending += 1
        self._incoming.emit(job)

    @Slot(object)
    def _submit(self, job) -> None:
        try:
            h = self.ctx.model_thread("chat").submit(self._job(job), "A request to the local server")
        except RuntimeError as exc:  # the app is closing
            job.put(exc)
            job.put(_DONE)
            return
        h.progress.connect(self._on_item)
        h.failed.connect(lambda _exc: None)  # reported to the request itself
        h.cancelled.connect(lambda: (job.token.cancel(), job.put(_DONE)))

    def _on_item(self, item) -> None:
        from desktop_app.core.memory_broker import Moves

        if isinstance(item, Moves):
            self.ctx.apply_moves(item)
        elif isinstance(item, dict) and item.get("type") == "loaded":
            from desktop_app.engines.chat_load import where_text

            where = where_text(item.get("plan"), int(item.get("n_gpu_layers") or 0))
            self.ctx.set_loaded("chat", f"{item.get('name', 'chat model')} ({where})", item.get("engine_pid"))
            self.loaded.emit(item)

    def _job(self, job):
        def fn(state, token):
            with self._lock:
                self.pending -= 1
            self.current = job
            try:
                if job.token.cancelled:
                    return
                if state.get("model_id") != job.model_id or state.get("engine") is None:
                    from desktop_app.engines.chat_load import load_job

                    info = yield from load_job(job.model_id, self.ctx.hardware, broker=self.ctx.broker)(state, token)
                    yield info
                self.model_id = job.model_id
                run_request(state["engine"], job, self, closing=token)
            except BaseException as exc:  # noqa: BLE001 - the request says it; the thread lives on
                job.put(exc)
            finally:
                self.current = None
                job.put(_DONE)

        return fn

    def stop(self) -> None:
        if self.current is not None:
            self.current.token.cancel()


class ServerRunner:
    """uvicorn in a thread: start (after the imports, off the GUI thread), stop, and the state."""

    def __init__(self, ctx, worker: GuiChatWorker, images=None) -> None:
        self.ctx, self.worker, self.images = ctx, worker, images  # images: ui/server_images.GuiImageWorker
        self.server = None
        self.thread: threading.Thread | None = None
        self.state = None
        self.host, self.port, self.error = "", 0, ""

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and bool(getattr(self.server, "started", False))

    def start(self, host: str, port: int, api_key: str | None, timeout: float = 20.0) -> None:
        """Blocking until uvicorn listens (call it in a background job); raises AtelierError."""
        import time

        import uvicorn

        from desktop_app.core.loopback import is_loopback
        from desktop_app.core.errors import AtelierError
        from desktop_app.server.app import ServerState, create_app

        if not is_loopback(host) and not api_key:
            raise AtelierError(f"Listening on {host} (not this machine only) needs an API key.")
        self.state = ServerState(self.ctx.library, api_key, self.worker, self.images)
        config = uvicorn.Config(create_app(self.state), host=host, port=int(port), log_level="warning",
                                access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # not the main thread: no signal handlers
        self.thread = threading.Thread(target=self._run, name="atelier-server", daemon=True)
        self.host, self.port, self.error = host, int(port), ""
        self.thread.start()
        end = time.monotonic() + timeout
        while not getattr(self.server, "started", False):
            if not self.thread.is_alive() or time.monotonic() > end:
                raise AtelierError(f"The server could not listen on {host}:{port}"
                                   + (f": {self.error}" if self.error else " (is the port in use?)."))
            time.sleep(0.05)

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # noqa: BLE001 - uvicorn exits the thread on a bind error
            self.error = str(exc) or type(exc).__name__

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.worker.stop()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.thread = None
