"""The persistent download queue the GUI drives: jobs run one after another (or N at a time) in
threads you give it (``run(stop)``) or its own (``start()``/``shutdown()``); pending jobs survive
a restart."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from desktop_app.core.errors import (
    AtelierError, Cancelled,
)
from desktop_app.core.library import Library
from desktop_app.core.paths import get_paths, write_json_atomic
from desktop_app.core.safepath import remove_inside, validate_repo_id, validate_revision
from desktop_app.core.settings import Settings
from desktop_app.core.cancel import CancelToken
from desktop_app.hub.client import HubClient

from desktop_app.hub.pull import plan_pull, pull_iter
from desktop_app.hub.transfer import DownloadControl, Paused, default_disk_probe

log = logging.getLogger("atelier.hub.downloads")





# ---------------------------------------------------------------------------------------
# the queue
# ---------------------------------------------------------------------------------------
@dataclass
class DownloadJob:
    """A queued download; snapshots of it are what the GUI shows."""

    repo_id: str
    filename: str | None = None
    revision: str | None = None
    accept_license: bool = False
    allow_pickle: bool = False
    allow_unverified: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "queued"  # queued | running | paused | done | failed | cancelled
    bytes_done: int = 0
    bytes_total: int | None = None
    speed_bps: float = 0.0
    eta_s: float | None = None
    current_file: str = ""
    message: str = ""
    record_id: str = ""
    partials: list[str] = field(default_factory=list)  # what cancel deletes (known once resolved)
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


PERSISTED_STATES = ("queued", "running", "paused")


class DownloadQueue:
    """Runs downloads one at a time (or ``workers`` at a time) and persists pending jobs.

    Drive it from your own worker thread with ``run(stop_token)`` (returns when the token is
    set), or let it own threads with ``start()`` and ``shutdown()``. ``on_event(job_snapshot)``
    is called from the downloading thread after every change (bridge it to a Qt signal).
    ``shutdown()`` pauses running downloads (their partial files stay, and they are queued again
    on the next start) and joins the threads, normally within a fraction of a second.
    """

    def __init__(
        self,
        state_file: Path | None = None,
        *,
        library: Library | None = None,
        client_factory: Callable[[], HubClient] = HubClient,
        disk_probe: Callable[[Path], int] = default_disk_probe,
        hw: Any = None,
        on_event: Callable[[DownloadJob], None] | None = None,
    ) -> None:
        self.state_file = state_file or (get_paths().data / "downloads.json")
        self.library = library or Library()
        self.client_factory = client_factory
        self.disk_probe = disk_probe
        self.hw = hw
        self.on_event = on_event
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, DownloadJob] = {}
        self._controls: dict[str, DownloadControl] = {}
        self._threads: list[threading.Thread] = []
        self._stop = CancelToken()
        self._load()

    # persistence ----------------------------------------------------------------------
    def _load(self) -> None:
        if not self.state_file.exists():
            return
        try:
            raw = json.loads(self.state_file.read_text("utf-8"))
        except (OSError, ValueError):
            return
        for d in raw.get("jobs", []):
            known = set(DownloadJob.__dataclass_fields__)
            job = DownloadJob(**{k: v for k, v in d.items() if k in known})
            if job.state == "running":
                job.state = "queued"
            self._jobs[job.id] = job

    def _save(self) -> None:
        with self._lock:
            jobs = [j.to_dict() for j in self._jobs.values() if j.state in PERSISTED_STATES]
        write_json_atomic(self.state_file, {"version": 1, "jobs": jobs}, indent=1)

    def _emit(self, job: DownloadJob) -> None:
        if self.on_event:
            try:
                self.on_event(DownloadJob(**job.to_dict()))
            except Exception:  # a broken listener must not kill the download
                log.exception("download listener failed")

    # public API -----------------------------------------------------------------------
    def add(self, repo_id: str, filename: str | None = None, *, revision: str | None = None,
            accept_license: bool = False, allow_pickle: bool = False, allow_unverified: bool = False) -> str:
        """Queue a download; returns its job id. Nothing touches the network until a worker runs it.

        The repo id and revision are validated first (UnsafeNameError, nothing queued): in the GUI
        they may come from a server's reply."""
        validate_repo_id(repo_id, "the download request")
        if revision:
            validate_revision(revision, "the download request")
        job = DownloadJob(repo_id=repo_id, filename=filename, revision=revision, accept_license=accept_license,
                          allow_pickle=allow_pickle, allow_unverified=allow_unverified)
        with self._lock:
            self._jobs[job.id] = job
            self._save()
            self._wake.notify_all()
        self._emit(job)
        return job.id

    def jobs(self) -> list[DownloadJob]:
        """Snapshots (copies) of every job, oldest first."""
        with self._lock:
            return [DownloadJob(**j.to_dict()) for j in sorted(self._jobs.values(), key=lambda j: j.created_at)]

    def get(self, job_id: str) -> DownloadJob:
        with self._lock:
            if job_id not in self._jobs:
                raise AtelierError(f"No download job {job_id}.")
            return DownloadJob(**self._jobs[job_id].to_dict())

    def pause(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs[job_id]
            ctl = self._controls.get(job_id)
            if job.state == "queued":
                job.state = "paused"
                self._save()
        if ctl is not None:
            ctl.pause()  # the worker sets the state when it stops
        else:
            self._emit(job)

    def resume(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs[job_id]
            if job.state in ("paused", "failed"):
                job.state = "queued"
                job.message = ""
                self._save()
                self._wake.notify_all()
        self._emit(job)

    def cancel(self, job_id: str) -> None:
        """Stop and delete the partial files."""
        with self._lock:
            job = self._jobs[job_id]
            ctl = self._controls.get(job_id)
            if ctl is None and job.state in ("queued", "paused", "failed"):
                owner = Settings().models_dir / "hub"
                for p in job.partials:  # from the state file: deleted only inside the hub folder
                    try:
                        remove_inside(Path(p), owner)
                    except AtelierError as exc:
                        log.warning("%s", exc)
                job.state = "cancelled"
                self._save()
        if ctl is not None:
            ctl.cancel()
        else:
            self._emit(job)

    def remove(self, job_id: str) -> None:
        """Forget a finished job (done/failed/cancelled)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job and job.state not in ("running",):
                del self._jobs[job_id]
                self._save()

    # running --------------------------------------------------------------------------
    def _claim(self) -> DownloadJob | None:
        with self._lock:
            for j in sorted(self._jobs.values(), key=lambda j: j.created_at):
                if j.state == "queued":
                    j.state = "running"
                    j.message = ""
                    self._controls[j.id] = DownloadControl()
                    return j
        return None

    def run_next(self) -> bool:
        """Run one queued job to its end in the calling thread. False when nothing is queued."""
        job = self._claim()
        if job is None:
            return False
        ctl = self._controls[job.id]
        self._emit(job)
        warning = ""
        try:
            client = self.client_factory()
            plan = plan_pull(job.repo_id, job.filename, revision=job.revision, accept_license=job.accept_license,
                             allow_pickle=job.allow_pickle, client=client, hw=self.hw)
            with self._lock:
                job.partials = [str(p) for p in plan.partial_paths()]
                job.bytes_total = plan.total_bytes
            for ev in pull_iter(job.repo_id, job.filename, client=client, library=self.library, control=ctl,
                                disk_probe=self.disk_probe, job_id=job.id, plan=plan,
                                allow_unverified=job.allow_unverified):
                with self._lock:
                    job.bytes_done, job.bytes_total = ev.bytes_done, ev.bytes_total
                    job.speed_bps, job.eta_s, job.current_file = ev.speed_bps, ev.eta_s, ev.filename
                    if ev.state == "retrying":
                        job.message = "connection lost, retrying"
                    elif ev.state == "verifying":
                        job.message = "verifying"
                    elif ev.state == "unverified":
                        job.message = ev.message
                    if ev.state == "done" and ev.message:
                        warning = ev.message
                    if ev.record_id:
                        job.record_id = ev.record_id
                self._emit(job)
            final, msg = "done", warning
        except Paused:
            final, msg = ("queued" if self._stop.cancelled else "paused"), "paused"
        except Cancelled:
            final, msg = "cancelled", "cancelled"
        except AtelierError as exc:
            final, msg = "failed", str(exc)
        except Exception as exc:  # keep the queue alive; the message says what happened
            log.exception("download job failed")
            final, msg = "failed", f"{type(exc).__name__}: {exc}"
        with self._lock:
            job.state, job.message = final, msg
            job.speed_bps, job.eta_s = 0.0, None
            self._controls.pop(job.id, None)
            self._save()
            self._wake.notify_all()
        self._emit(job)
        return True

    def run(self, stop: CancelToken | None = None, idle_wait: float = 0.25) -> None:
        """Process jobs in the calling thread until ``stop`` is set (for a GUI worker thread)."""
        stop = stop or self._stop
        while not stop.cancelled and not self._stop.cancelled:
            if not self.run_next():
                with self._lock:
                    self._wake.wait(idle_wait)

    def run_until_idle(self) -> None:
        """Process every queued job, then return (CLI, tests)."""
        while not self._stop.cancelled and self.run_next():
            pass

    def start(self, workers: int = 1) -> None:
        """Start ``workers`` threads of our own (stop them with ``shutdown``)."""
        self._stop.reset()
        for i in range(workers):
            t = threading.Thread(target=self.run, name=f"atelier-download-{i}", daemon=False)
            t.start()
            self._threads.append(t)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Pause what runs (partials kept, re-queued for next time), stop threads. True if all stopped."""
        self._stop.cancel()
        with self._lock:
            controls = list(self._controls.values())
            self._wake.notify_all()
        for c in controls:
            c.pause()
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        alive = [t for t in self._threads if t.is_alive()]
        self._threads = alive
        self._save()
        return not alive
