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

from PySide6.QtCore import QObject, QThread, Signal, Slot

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

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._thread = QThread()
        self._thread.setObjectName(f"atelier-{name}")
        _ALL_THREADS.add(self._thread)
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run_job)
        self._cleanup.connect(self._worker.cleanup)
        for sig in ("yielded", "finished", "failed", "cancelled", "started"):
            getattr(self._worker, sig).connect(getattr(self, sig))
        self.finished.connect(self._on_done)
        self.failed.connect(self._on_done)
        self.cancelled.connect(self._on_done)
        self._tokens: dict[int, CancelToken] = {}
        self._thread.start()

    @property
    def busy(self) -> bool:
        return bool(self._tokens)

    def submit(self, fn: Callable[[dict, CancelToken], Any]) -> int:
        """Queue ``fn(state, token)`` to run in this thread; returns the job id."""
        if not self._thread.isRunning():
            raise RuntimeError(f"thread {self.name} is shut down")
        job_id = next(_job_ids)
        token = CancelToken()
        self._tokens[job_id] = token
        self._submit.emit((job_id, fn, token))
        return job_id

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel one job, or every queued and running job."""
        for jid, tok in list(self._tokens.items()):
            if job_id is None or jid == job_id:
                tok.cancel()

    @Slot(object)
    def _on_done(self, ev: JobEvent) -> None:
        self._tokens.pop(ev.job, None)

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


class BackgroundOp(QObject):
    """Handle of one ``run_in_background`` call; its signals fire on the GUI thread."""

    progress = Signal(object)
    succeeded = Signal(object)
    errored = Signal(object)

    def __init__(self, token: CancelToken) -> None:
        super().__init__()
        self.token = token

    def cancel(self) -> None:
        self.token.cancel()


class BackgroundRunner(QObject):
    """A shared long-lived QThread for short one-shot jobs (scans, detection, hub calls)."""

    def __init__(self, name: str = "background", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = ModelThread(name, self)
        self._ops: dict[int, BackgroundOp] = {}
        self._thread.yielded.connect(self._on_yielded)
        self._thread.finished.connect(self._on_finished)
        self._thread.failed.connect(self._on_failed)
        self._thread.cancelled.connect(self._on_cancelled)

    def run(
        self,
        fn: Callable[..., Any],
        on_success: Callable[[Any], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[Any], None] | None = None,
    ) -> BackgroundOp:
        """Run ``fn(token)`` in the background. A generator's items go to ``on_progress``."""
        def job(_state, token):
            return fn(token)

        job_id = self._thread.submit(job)
        op = BackgroundOp(self._thread._tokens[job_id])
        if on_success:
            op.succeeded.connect(on_success)
        if on_failure:
            op.errored.connect(on_failure)
        if on_progress:
            op.progress.connect(on_progress)
        self._ops[job_id] = op
        return op

    @Slot(object)
    def _on_yielded(self, ev: JobEvent) -> None:
        op = self._ops.get(ev.job)
        if op:
            op.progress.emit(ev.value)

    @Slot(object)
    def _on_finished(self, ev: JobEvent) -> None:
        op = self._ops.pop(ev.job, None)
        if op:
            op.succeeded.emit(ev.value)

    @Slot(object)
    def _on_failed(self, ev: JobEvent) -> None:
        op = self._ops.pop(ev.job, None)
        if op:
            op.errored.emit(ev.value)

    @Slot(object)
    def _on_cancelled(self, ev: JobEvent) -> None:
        op = self._ops.pop(ev.job, None)
        if op:
            op.errored.emit(Cancelled())

    def shutdown(self) -> bool:
        return self._thread.shutdown()
