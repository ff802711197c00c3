"""Downloads panel: the persistent download queue with progress (bytes, speed, ETA), pause,
resume and cancel.

The queue (desktop_app.hub.downloads.DownloadQueue) runs in the dedicated long-lived
``ctx.model_thread("downloads")``; its events arrive here through a queued signal and are
coalesced (one pending snapshot per job, flushed by a 100 ms timer), so a fast download never
floods the GUI thread. Jobs left pending when the app was closed or killed resume at ``start()``
(unless the offline switch is on: they then wait, and no socket is opened).
"""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from desktop_app.ui.widgets.throttle import Coalescer
from desktop_app.ui.models.common import human_eta, human_size, human_speed, licence_box
from desktop_app.ui.widgets.named import named

log = logging.getLogger(__name__)

ACTIVE_STATES = ("queued", "running", "paused")
STATE_LABELS = {"queued": "Waiting", "running": "Downloading", "paused": "Paused", "done": "Installed",
                "failed": "Failed", "cancelled": "Cancelled"}


class _Bridge(QObject):
    """Lives on the GUI thread; ``poke`` is emitted from the downloading thread (queued)."""

    poke = Signal()


class DownloadRow(QFrame):
    """One job: title, progress bar, 'x of y · speed · ETA' line, Pause/Resume/Cancel/Remove."""

    def __init__(self, job_id: str, view: "DownloadsView") -> None:
        super().__init__()
        self.job_id = job_id
        self.view = view
        self.job = None
        self.setObjectName(f"download-{job_id}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = named(QLabel(), "downloadTitle")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.bar = named(QProgressBar(), "downloadProgress")
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.status = named(QLabel(), "downloadStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        def button(text, name, slot):
            b = QPushButton(text)
            b.setObjectName(name)
            b.clicked.connect(slot)
            return b

        self.pause_btn = button("Pause", "downloadPause", self._on_pause)
        self.resume_btn = button("Resume", "downloadResume", self._on_resume)
        self.cancel_btn = button("Cancel", "downloadCancel", self._on_cancel)
        self.remove_btn = button("Clear", "downloadClear", self._on_remove)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        for b in (self.pause_btn, self.resume_btn, self.cancel_btn, self.remove_btn):
            top.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)

    def update_job(self, job) -> None:
        self.job = job
        name = job.filename or "(whole repository)"
        if not job.filename and job.current_file:
            name = f"pipeline · {job.current_file}"
        title = f"{job.repo_id} · {name}"
        self.title.setText(title)
        for b, verb in ((self.pause_btn, "Pause"), (self.resume_btn, "Resume"), (self.cancel_btn, "Cancel"),
                        (self.remove_btn, "Clear from the list")):
            b.setAccessibleName(f"{verb} download {job.repo_id} {job.filename or ''}".strip())
        total, done = job.bytes_total, job.bytes_done
        if total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * min(1.0, done / total)))
            self.bar.setFormat(f"{100 * done / total:.1f} %")
        elif job.state == "running":
            self.bar.setRange(0, 0)  # busy indicator until the size is known
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(1000 if job.state == "done" else 0)
            self.bar.setFormat("%p %")
        self.bar.setAccessibleName(f"Progress of {job.repo_id} {job.filename or ''}".strip())
        state = STATE_LABELS.get(job.state, job.state)
        parts = [state]
        if total:
            parts.append(f"{human_size(done)} of {human_size(total)}")
        elif done:
            parts.append(human_size(done))
        if job.state == "running":
            parts.append(human_speed(job.speed_bps))
            parts.append(f"ETA {human_eta(job.eta_s)}")
            if job.message:
                parts.append(job.message)
        elif job.state == "failed":
            parts.append(job.message or "failed")
        elif job.state == "done":
            parts.append(f"in the library as {job.record_id}" if job.record_id else "installed")
        elif job.state == "paused":
            parts.append("the partial file is kept; Resume continues where it stopped")
        elif job.state == "queued" and job.message:
            parts.append(job.message)
        self.status.setText(" · ".join(p for p in parts if p))
        self.pause_btn.setVisible(job.state in ("queued", "running"))
        self.resume_btn.setVisible(job.state in ("paused", "failed"))
        self.cancel_btn.setVisible(job.state in ACTIVE_STATES or job.state == "failed")
        self.remove_btn.setVisible(job.state in ("done", "cancelled", "failed"))

    @Slot()
    def _on_pause(self) -> None:
        self.view.pause(self.job_id)

    @Slot()
    def _on_resume(self) -> None:
        self.view.resume(self.job_id)

    @Slot()
    def _on_cancel(self) -> None:
        self.view.cancel(self.job_id)

    @Slot()
    def _on_remove(self) -> None:
        self.view.remove(self.job_id)


# What the message line says when the job it is about changes state ("Queued …" never stays).
STATE_NEWS = {"running": "Downloading {name}…",
              "paused": "Paused {name}: the part downloaded so far is kept; Resume continues it.",
              "cancelled": "Cancelled {name}: its partial file was deleted."}


class DownloadsView(QWidget):
    queue_changed = Signal(int)  # number of active jobs
    job_updated = Signal(object)  # DownloadJob snapshot (GUI thread, coalesced)
    job_finished = Signal(object)  # DownloadJob snapshot in a final state

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("downloadsView")
        self.queue = None
        self._runner_job: int | None = None
        self._rows: dict[str, DownloadRow] = {}
        self._pending: dict[str, object] = {}
        self._pending_lock = threading.Lock()
        self._last_state: dict[str, str] = {}
        self._bridge = _Bridge(self)
        self._bridge.poke.connect(self._on_poke, Qt.ConnectionType.QueuedConnection)
        self._flush_timer = Coalescer(100, self._flush, self)
        self._offline_note = False  # the message says offline mode holds the downloads
        self._told_job: str | None = None  # the job the message is about ("Queued …"): it follows its state

        self.message = QLabel("No downloads yet. Choose a model in the Catalog or in Hub search.")
        self.message.setObjectName("downloadsMessage")
        self.message.setWordWrap(True)
        self.rows_box = QWidget()
        self.rows_layout = QVBoxLayout(self.rows_box)
        self.rows_layout.addStretch(1)
        scroll = named(QScrollArea(), "downloadsList", "Download queue")
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.rows_box)
        lay = QVBoxLayout(self)
        lay.addWidget(self.message)
        lay.addWidget(scroll, 1)

        self.ctx.hardware_ready.connect(self._on_hardware_ready)

    # the queue and its thread --------------------------------------------------------------
    def ensure_queue(self):
        if self.queue is None:
            from desktop_app.hub.download_queue import DownloadQueue

            self.queue = DownloadQueue(library=self.ctx.library, hw=self.ctx.hardware, on_event=self._on_queue_event)
            for job in self.queue.jobs():
                self._store(job)
            self._flush()
        return self.queue

    def start(self) -> None:
        """Show persisted jobs. Those that quitting interrupted wait, paused, until the user resumes
        them (no network call the user did not ask for now), unless they chose "always resume"
        (setting ``downloads_auto_resume``); then they resume, unless offline."""
        self.ensure_queue()
        pending = [j for j in self.queue.jobs() if j.state == "queued"]
        if pending and not self.ctx.settings.get("downloads_auto_resume"):
            for job in pending:
                self.queue.pause(job.id)
            self._flush()
            self.say(f"{len(pending)} download(s) were interrupted when Atelier closed. They wait, paused, with what "
                     "was downloaded kept: Resume continues each one.")
            self.start_runner()  # idle until the user queues or resumes something
            return
        self.start_runner()
        if pending and self.ctx.settings.offline:
            self.say(f"{len(pending)} download(s) waiting: offline mode is on, so they resume when you "
                     "turn it off in Settings.", offline=True)
        elif pending:
            self.say(f"Resuming {len(pending)} download(s) left unfinished last time.")

    def start_runner(self) -> bool:
        """Run the queue in the 'downloads' thread (not while offline: nothing may touch the network)."""
        if self._runner_job is not None or self.ctx.settings.offline:
            return False
        queue = self.ensure_queue()
        thread = self.ctx.model_thread("downloads")
        h = self._runner_job = thread.submit(lambda _state, token: queue.run(token), "The download queue")
        h.succeeded.connect(lambda _r, h=h: self._on_runner_ended(h))
        h.cancelled.connect(lambda h=h: self._on_runner_ended(h))
        h.failed.connect(lambda exc, h=h: self._on_runner_ended(h, exc))
        return True

    def _on_runner_ended(self, handle, exc: BaseException | None = None) -> None:
        if handle is self._runner_job:
            self._runner_job = None
            if exc is not None:
                self.say(f"The download queue stopped: {exc}")

    def _on_queue_event(self, job) -> None:
        """Called in the downloading thread: store the snapshot, wake the GUI once."""
        with self._pending_lock:
            first = not self._pending
            self._pending[job.id] = job
        if first:
            self._bridge.poke.emit()

    @Slot()
    def _on_poke(self) -> None:
        self._flush_timer.poke()

    def _store(self, job) -> None:
        with self._pending_lock:
            self._pending[job.id] = job

    @Slot()
    def _flush(self) -> None:
        with self._pending_lock:
            jobs, self._pending = list(self._pending.values()), {}
        changed_library = False
        for job in jobs:
            row = self._rows.get(job.id)
            if row is None:
                row = DownloadRow(job.id, self)
                self._rows[job.id] = row
                self.rows_layout.insertWidget(self.rows_layout.count() - 1, row)
            row.update_job(job)
            before = self._last_state.get(job.id)
            self._last_state[job.id] = job.state
            self.job_updated.emit(job)
            if job.id == self._told_job and job.state != before and job.state in STATE_NEWS:
                self.say(STATE_NEWS[job.state].format(name=f"{job.repo_id} {job.filename or ''}".strip()), job=job.id)
            if job.state != before and job.state in ("done", "failed", "cancelled"):
                self.job_finished.emit(job)
                if job.state == "done" and (job.message or "").startswith("already installed"):
                    self.say(f"{job.repo_id} {job.filename or ''}: {job.message}; nothing was downloaded.")
                elif job.state == "done":
                    changed_library = True
                    self.say(f"{job.repo_id} {job.filename or ''}: downloaded, verified and added to "
                                         "the library.")
                elif job.state == "failed":
                    self.say(f"Download of {job.repo_id} {job.filename or ''} failed: {job.message}")
        self.queue_changed.emit(sum(1 for s in self._last_state.values() if s in ACTIVE_STATES))
        if changed_library:
            self.ctx.library_changed.emit()

    @Slot(object)
    def _on_hardware_ready(self, hw) -> None:
        if self.queue is not None:
            self.queue.hw = hw

    # the message line ----------------------------------------------------------------------
    def say(self, text: str, offline: bool = False, job: str | None = None) -> None:
        """One line about the queue; it remembers what it is about, so it never goes stale."""
        self.message.setText(text)
        self._offline_note, self._told_job = offline, job

    def offline_changed(self) -> None:
        """Settings saved with another offline switch: an offline note goes when it is no longer true."""
        if self._offline_note and not self.ctx.settings.offline:
            waiting = sum(1 for s in self._last_state.values() if s == "queued")
            self.say(f"Online again: {waiting} waiting download(s) resume now." if waiting else
                     "Online again: downloads from the hub work.")

    # adding jobs ---------------------------------------------------------------------------
    def _offline_refusal(self) -> bool:
        if self.ctx.settings.offline:
            self.say("Offline mode is on, so nothing can be downloaded. Turn 'Offline' off in Settings "
                     "to use the hub.", offline=True)
            return True
        return False

    def add(self, repo_id: str, filename: str | None, revision: str | None = None,
            accept_license: bool = False) -> str | None:
        if self._offline_refusal():
            return None
        queue = self.ensure_queue()
        job_id = queue.add(repo_id, filename or None, revision=revision or None, accept_license=accept_license,
                           allow_pickle=bool(self.ctx.settings.get("allow_pickle")))
        self.say(f"Queued {repo_id} {filename or ''}.".replace(" .", "."), job=job_id)  # follows the job from here
        self._flush()  # the row appears at once (the queue's event is already pending)
        self.start_runner()
        return job_id

    def enqueue_catalog_entry(self, entry) -> str | None:
        """A catalog entry whose licence (if restrictive or gated) the user has just accepted."""
        return self.add(entry.repo_id, entry.file or None, accept_license=True)

    def licence_box(self, spec) -> QMessageBox:
        why = "is gated on the hub: its licence" if spec.gated else "is distributed under a restrictive licence"
        token = ("\n\nThe hub also needs an access token (Settings) of an account that accepted it."
                 if spec.gated else "")
        return licence_box(self, f"{spec.repo_id} {why} ({spec.license or 'see the model card'}), which "
                                 f"must be read and accepted first.\n\nRead it: {self.ctx.settings.hf_endpoint}/"
                                 f"{spec.repo_id}{token}\n\nDo you accept the licence?")

    def enqueue_spec(self, spec) -> str | None:
        """A file (or whole repo) chosen in Hub search; gated or restrictive licences are accepted first."""
        from desktop_app.hub.licences import licence_requires_acceptance

        accept = False
        if licence_requires_acceptance(spec.license, gated=spec.gated, repo_id=spec.repo_id,
                                       tags=spec.extra.get("tags", ())):
            box = self.licence_box(spec)
            box.exec()
            if box.clickedButton() is not box.property("accept_button"):
                self.say(f"Download of {spec.repo_id} cancelled: the licence was not accepted.")
                return None
            accept = True
        return self.add(spec.repo_id, spec.filename or None, revision=spec.revision or None, accept_license=accept)

    # controls ------------------------------------------------------------------------------
    def pause(self, job_id: str) -> None:
        self.ensure_queue().pause(job_id)

    def resume(self, job_id: str) -> None:
        if self._offline_refusal():
            return
        self.ensure_queue().resume(job_id)
        self.start_runner()

    def cancel(self, job_id: str) -> None:
        self.ensure_queue().cancel(job_id)

    def remove(self, job_id: str) -> None:
        self.ensure_queue().remove(job_id)
        row = self._rows.pop(job_id, None)
        self._last_state.pop(job_id, None)
        if row is not None:
            self.rows_layout.removeWidget(row)
            row.deleteLater()
        self.queue_changed.emit(sum(1 for s in self._last_state.values() if s in ACTIVE_STATES))

    def row(self, job_id: str) -> DownloadRow | None:
        return self._rows.get(job_id)

    def active_count(self) -> int:
        """Downloads running or waiting to run (quitting would interrupt them)."""
        if self.queue is None:
            return 0
        return sum(1 for j in self.queue.jobs() if j.state in ("queued", "running"))

    def shutdown(self) -> None:
        """Pause running downloads (partials kept, resumed next start); the runner loop then returns."""
        self._flush_timer.stop()
        if self.queue is not None:
            self.queue.shutdown(timeout=0)
        if self._runner_job is not None:
            self.ctx.model_thread("downloads").cancel(self._runner_job)
