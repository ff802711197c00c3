"""The server's model thread (Qt-free): one thread that owns the chat engine (a child process,
as in the GUI) and runs requests one after another, in the order they came; a request for
another model unloads the current one first. A request's text reaches its HTTP handler through
an asyncio queue; cancelling its token (the client went away) stops it within one token.
The memory broker knows what it holds, like the GUI's slots."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from desktop_app.core.cancel import CancelToken

log = logging.getLogger(__name__)
_DONE = object()


@dataclass
class Job:
    model_id: str
    messages: list[dict]
    params: dict
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue
    token: CancelToken = field(default_factory=CancelToken)
    kind: str = "chat"  # chat | complete (``messages``: the prompt) | embed (``messages``: the texts)

    def put(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the event loop is closed (the server is stopping)
            self.token.cancel()


def run_request(engine, job: Job, counts, closing=None) -> None:
    """One request on the loaded ``engine`` (both servers' model threads): chat, raw completion
    or embeddings; every event goes to the request; ``counts`` gets ``served``/``cancelled``;
    ``closing`` (a token): the app is quitting, so the request stops too."""
    if job.kind == "embed":
        job.put(("embeddings", *engine.embed(job.messages)))
        counts.served += 1
        return
    it = engine.chat([], job.params, job.token, raw_prompt=job.messages) if job.kind == "complete" \
        else engine.chat(job.messages, job.params, job.token)
    try:
        for ev in it:
            if closing is not None and closing.cancelled:
                job.token.cancel()
            job.put(ev)
            if ev.type == "done" and ev.stats is not None and ev.stats.finish_reason == "cancelled":
                counts.cancelled += 1
    finally:
        it.close()
    counts.served += 1


class ChatWorker:
    def __init__(self, library=None, broker=None, hardware=None) -> None:
        self.library, self.broker, self.hardware = library, broker, hardware
        self._jobs: queue.Queue = queue.Queue()
        self.state: dict = {}
        self.model_id: str | None = None
        self.served = 0
        self.cancelled = 0  # requests stopped early (the client went away)
        self.pending = 0
        self.current: Job | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="atelier-server-model", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self.pending += 1
        self._jobs.put(job)

    def _ensure(self, job: Job) -> None:
        if self.model_id == job.model_id and self.state.get("engine") is not None:
            return
        from desktop_app.engines.chat_load import load_job

        self.model_id = None
        gen = load_job(job.model_id, self.hardware, library=self.library, broker=self.broker)(self.state, job.token)
        while True:  # a load's items (progress; a broker move has no GUI here: it is not waited for)
            try:
                item = next(gen)
            except StopIteration:
                break
            gate = getattr(item, "gate", None)
            if gate is not None:
                gate.set()
        self.model_id = job.model_id

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self._jobs.get()
            if job is None:
                break
            self.pending -= 1
            if job.token.cancelled:
                job.put(_DONE)
                continue
            self.current = job
            try:
                self._ensure(job)
                run_request(self.state["engine"], job, self)
            except BaseException as exc:  # noqa: BLE001 - reported to the request, the thread lives on
                log.warning("server request failed: %s", exc)
                job.put(exc)
            finally:
                self.current = None
                job.put(_DONE)

    def stop(self) -> None:
        self._stop.set()
        if self.current is not None:
            self.current.token.cancel()
        self._jobs.put(None)
        self._thread.join(timeout=10)
        close = self.state.pop("close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001
                log.exception("could not stop the server's chat engine")


class ImageWorker:
    """The server's image thread (Qt-free): the diffusion engine's child process, one generation
    at a time, in order. ``generate`` blocks (the HTTP handler runs it in a thread) and returns
    the PNGs with their parameters."""

    def __init__(self, library=None) -> None:
        self.library = library
        self._lock = threading.Lock()
        self.engine = None
        self.served = 0

    def generate(self, rec, prompt: str, width: int | None, height: int | None, n: int, seed: int | None,
                 token: CancelToken, options: dict | None = None) -> list[tuple[bytes, dict]]:
        from desktop_app.core.errors import AtelierError
        from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec

        with self._lock:  # one at a time, in the order they came
            if self.engine is None:
                from desktop_app.engines.diffusion.client import EngineProcess

                self.engine = EngineProcess()
            req = GenerateRequest(model=ModelSpec.for_record(rec), prompt=prompt, width=width, height=height,
                                  seed=seed, batch=n, preview=False, **(options or {}), model_sha256=rec.sha256 or "")
            req.validate()
            out = []
            for ev in self.engine.generate(req, token):
                if ev.type == "result":
                    out.append((ev.image, dict(ev.get("params") or {})))
                elif ev.type == "error":
                    raise AtelierError(ev.get("message", "The image engine failed."))
            self.served += 1
            return out

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
