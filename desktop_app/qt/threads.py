"""Long-lived worker threads and the background-op API used by every tab.

* ``ModelThread``: one long-lived QThread per loaded model. A worker QObject lives in it; jobs are
  callables ``fn(state, token)`` run *in that thread*. ``state`` is a dict private to the thread, so
  the model object (e.g. a llama_cpp.Llama) never leaves it. A job that returns a generator has each
  item delivered through the queued ``yielded`` signal. Cancel is cooperative (a CancelToken).
* ``run_in_background(fn, on_success, on_failure, on_progress)``: one-shot work (disk scans,
  hardware detection, hub calls) on a shared long-lived QThread, in the spirit of Anki's QueryOp.

Results reach widgets only through queued ``Signal(object)``. Shutdown: cancel, quit, wait.
"""

from __future__ import annotations

import itertools
import logging
import types
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QMetaMethod, QObject, QThread, Signal, Slot

from desktop_app.core.errors import Cancelled
from desktop_app.engines.base import CancelToken

log = logging.getLogger(__name__)

_ALL_THREADS: "weakref.WeakSet[QThread]" = weakref.WeakSet()
_job_ids = itertools.count(1)


def running_qthreads() -> list[str]:
    """Names of QThreads started by us that are still running (the test fixture checks this)."""
    out = []
    for t in list(_ALL_THREADS):
        try:
            if t.isRunning():
                out.append(t.objectName())
        except RuntimeError:  # C++ object already deleted
            pass
    return out


@dataclass
class JobEvent:
    """What a ModelThread emits: the job id and a value (yielded item, result or exception)."""

    job: int
    value: Any = None


class JobHandle(QObject):
    """One submitted job, with its own signals (superqt's worker, Anki's QueryOp): connect to the
    handle, never filter a thread's signals by job id. Signals fire on the GUI thread.

    ``progress(item)`` for each item a generator job yields; then exactly one of
    ``succeeded(result)``, ``failed(exception)`` or ``cancelled()``. ``errored(exception)`` fires
    for a failure and for a cancel (with ``Cancelled()``), for callers with one error path. A
    failure that nobody connected to ``failed`` or ``errored`` reaches the user through the
    thread's ``on_unhandled`` route (the app's status line), not only the log.
    """

    progress = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    errored = Signal(object)

    def __init__(self, job_id: int, token: CancelToken, what: str = "") -> None:
        super().__init__()
        self.id = job_id
        self.token = token
        self.what = what
        self.done = False

    def cancel(self) -> None:
        self.token.cancel()

    def handles_failure(self) -> bool:
        return any(self.isSignalConnected(QMetaMethod.fromSignal(sig)) for sig in (self.failed, self.errored))

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.what}{' done' if self.done else ''}>"


class _Worker(QObject):
    yielded = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal(object)
    started = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.state: dict = {}

    @Slot(object)
    def run_job(self, job: tuple) -> None:
        job_id, fn, token = job
        self.started.emit(JobEvent(job_id))
        try:
            if token.cancelled:
                raise Cancelled()
            result = fn(self.state, token)
            if isinstance(result, types.GeneratorType):
                gen = result
                try:
                    while True:
                        item = next(gen)
                        self.yielded.emit(JobEvent(job_id, item))
                        if token.cancelled:
                            gen.close()
                            raise Cancelled()
                except StopIteration as stop:
                    result = stop.value
            self.finished.emit(JobEvent(job_id, result))
        except Cancelled:
            self.cancelled.emit(JobEvent(job_id))
        except BaseException as exc:  # noqa: BLE001 - reported to the UI, never swallowed silently
            log.exception("job %s failed", job_id)
            self.failed.emit(JobEvent(job_id, exc))

    @Slot()
    def cleanup(self) -> None:
        """Runs in the thread before it stops: release what jobs left in ``state``."""
        closer = self.state.pop("close", None)
        try:
            if callable(closer):
                closer()
        except Exception:  # noqa: BLE001
            log.exception("cleanup failed")
        self.state.clear()
        # Quit from inside the thread, after every job queued before the cleanup has ended.
        QThread.currentThread().quit()


class ModelThread(QObject):
    """One long-lived QThread with a worker moved into it. Jobs run one after another."""

    yielded = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal(object)
    started = Signal(object)
    _submit = Signal(object)
    _cleanup = Signal()

    def __init__(self, name: str, parent: QObject | None = None,
                 on_unhandled: Callable[[str], None] | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.on_unhandled = on_unhandled
        self._thread = QThread()
        self._thread.setObjectName(f"atelier-{name}")
        _ALL_THREADS.add(self._thread)
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run_job)
        self._cleanup.connect(self._worker.cleanup)
        for sig in ("yielded", "finished", "failed", "cancelled", "started"):
            getattr(self._worker, sig).connect(getattr(self, sig))
        self.yielded.connect(self._on_yielded)
        self.finished.connect(self._on_finished)
        self.failed.connect(self._on_failed)
        self.cancelled.connect(self._on_cancelled)
        self._handles: dict[int, JobHandle] = {}
        self._thread.start()

    @property
    def busy(self) -> bool:
        return bool(self._handles)

    @property
    def _tokens(self) -> dict[int, CancelToken]:
        return {jid: h.token for jid, h in self._handles.items()}

    def submit(self, fn: Callable[[dict, CancelToken], Any], what: str = "") -> JobHandle:
        """Queue ``fn(state, token)`` to run in this thread; returns its JobHandle (connect to it).
        ``what``: how the user would name the job, for an unhandled failure ("Loading the model")."""
        handle = JobHandle(next(_job_ids), CancelToken(), what)
        if not self._thread.isRunning():
            # The app is closing: a queued signal (hardware ready, library changed) that still
            # reaches a view asks for work nobody will see. Never run it, never raise on the GUI
            # thread; the handle is born cancelled and done, and fires nothing.
            log.info("thread %s is shut down; not running %s", self.name, what or "a job")
            handle.token.cancel()
            handle.done = True
            return handle
        self._handles[handle.id] = handle
        self._submit.emit((handle.id, fn, handle.token))
        return handle

    def cancel(self, job: "JobHandle | int | None" = None) -> None:
        """Cancel one job (its handle or id), or every queued and running job."""
        jid = job.id if isinstance(job, JobHandle) else job
        for i, h in list(self._handles.items()):
            if jid is None or i == jid:
                h.token.cancel()

    # routing: each job's events reach its own handle
    @Slot(object)
    def _on_yielded(self, ev: JobEvent) -> None:
        h = self._handles.get(ev.job)
        if h is not None:
            h.progress.emit(ev.value)

    def _end(self, ev: JobEvent) -> JobHandle | None:
        h = self._handles.pop(ev.job, None)
        if h is not None:
            h.done = True
        return h

    @Slot(object)
    def _on_finished(self, ev: JobEvent) -> None:
        h = self._end(ev)
        if h is not None:
            h.succeeded.emit(ev.value)

    @Slot(object)
    def _on_failed(self, ev: JobEvent) -> None:
        h = self._end(ev)
        if h is None:
            return
        if not h.handles_failure():
            report_unhandled(self.on_unhandled, h.what or f"A background job ({self.name})", ev.value)
        h.failed.emit(ev.value)
        h.errored.emit(ev.value)

    @Slot(object)
    def _on_cancelled(self, ev: JobEvent) -> None:
        h = self._end(ev)
        if h is not None:
            h.cancelled.emit()
            h.errored.emit(Cancelled())

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Cancel everything, let the worker release its state, quit and wait. Idempotent."""
        if not self._thread.isRunning():
            return True
        self.cancel()
        self._cleanup.emit()  # the worker releases its state, then quits its own event loop
        ok = self._thread.wait(timeout_ms)
        if not ok:
            log.error("thread %s did not stop within %d ms", self.name, timeout_ms)
        else:
            self._worker.deleteLater()
        return ok


def watch(handle: JobHandle, is_current: Callable[[JobHandle], bool], *,
          progress: Callable[[Any], None] | None = None, succeeded: Callable[[Any], None] | None = None,
          failed: Callable[[BaseException], None] | None = None,
          cancelled: Callable[[], None] | None = None) -> JobHandle:
    """Connect a job's handle to a view's slots, which run only while ``is_current(handle)``: the
    late events of a job the view has replaced (a superseded load) are dropped."""
    def guard(fn):
        return lambda *args: fn(*args) if is_current(handle) else None

    for sig, fn in ((handle.progress, progress), (handle.succeeded, succeeded), (handle.failed, failed),
                    (handle.cancelled, cancelled)):
        if fn is not None:
            sig.connect(guard(fn))
    return handle


def report_unhandled(route: Callable[[str], None] | None, what: str, exc: BaseException) -> None:
    """A failure no caller handles: logged, and said to the user through ``route`` (Anki's QueryOp
    shows such errors too). Without a route it is only logged."""
    text = f"{what} failed: {exc}"
    log.error("unhandled failure: %s", text)
    if route is not None:
        try:
            route(text)
        except Exception:  # noqa: BLE001 - reporting must never raise
            log.exception("could not report an unhandled failure")


BackgroundOp = JobHandle  # the one job handle type (older name)


class BackgroundRunner(QObject):
    """A shared long-lived QThread for short one-shot jobs; the app has one lane for disk/CPU work
    (scans, fit badges, gallery, history) and one for network calls (hub search, catalog refresh,
    config fetches), so that a slow hub never waits in front of a fit badge."""

    def __init__(self, name: str = "background", parent: QObject | None = None,
                 on_unhandled: Callable[[str], None] | None = None) -> None:
        super().__init__(parent)
        self._thread = ModelThread(name, self, on_unhandled=on_unhandled)

    def run(
        self,
        fn: Callable[..., Any],
        on_success: Callable[[Any], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[Any], None] | None = None,
        what: str = "",
    ) -> JobHandle:
        """Run ``fn(token)`` in the background; returns its JobHandle. A generator's items go to
        ``on_progress``; ``on_failure`` gets a failure or a cancel (``Cancelled()``)."""
        def job(_state, token):
            return fn(token)

        handle = self._thread.submit(job, what)
        if on_success:
            handle.succeeded.connect(on_success)
        if on_failure:
            handle.errored.connect(on_failure)
        if on_progress:
            handle.progress.connect(on_progress)
        return handle

    def shutdown(self) -> bool:
        return self._thread.shutdown()
