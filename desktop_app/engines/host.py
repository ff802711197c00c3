"""The parent side of an engine child process (chat, images): start it, run jobs, survive its death.

Qt-free, and never imports the engine's heavy libraries (torch, diffusers, llama_cpp): the GUI
process stays light, and a model that breaks its engine (a ``GGML_ASSERT``, a driver fault, the
OOM killer) ends only the child. Blocking API meant for a model's worker QThread (or the CLI).

One job at a time per host. Engine failures come back as ``error`` events, never as exceptions;
the death of the child yields an ``error`` event of kind ``crashed`` (with the last line of its
log) and the next job starts a fresh child. ``stop()`` asks the child to exit and kills it when it
does not within its timeout, so closing never waits on a stuck engine.

Subclasses name the child's module (``server_module``), what the user calls it (``label``) and its
log file (``log_name``), and add their typed requests on top of ``_job``.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from desktop_app.core.errors import AtelierError
from desktop_app.core.runtime import python_argv
from desktop_app.engines import wire as P
from desktop_app.engines.base import CancelToken
from desktop_app.engines.wire import Event

_EXIT = "_exit"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except (ValueError, AttributeError):
        return f"signal {-code}"


class EngineHost:
    """An engine in a child process (see the module doc).

    ``env``: extra environment variables for the child (tests use the fault-injection hooks its
    server documents). ``start_timeout``: seconds to wait for the child's heavy imports.
    """

    server_module = ""  # e.g. "desktop_app.engines.diffusion.server"
    label = "engine"  # what the user reads: "the image engine", "the chat engine"
    log_name = "engine.log"
    restart_hint = "It restarts on the next job"
    # Seconds a cancelled job may take to end before the child is killed (None: wait for it). A
    # child stuck in native code (a template loop, a hung driver) never reads its cancel.
    cancel_grace: float | None = None

    def __init__(self, env: dict[str, str] | None = None, start_timeout: float = 300.0,
                 log_path: str | Path | None = None) -> None:
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self._log_path = Path(log_path) if log_path else None
        self._proc: subprocess.Popen | None = None
        self._events: queue.Queue[Event] = queue.Queue()
        self._pongs: queue.Queue[Event] = queue.Queue()
        self._write_lock = threading.Lock()
        self._job_lock = threading.Lock()
        self._ready = threading.Event()
        self._ready_info: dict = {}
        self._exit_code: int | None = None
        self._reader: threading.Thread | None = None
        self._log_offset = 0
        self.crashes = 0

    # -- life cycle -------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            from desktop_app.core.paths import get_paths

            self._log_path = get_paths().logs / self.log_name
        return self._log_path

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Spawn the child (returns at once; the first job waits until it is ready)."""
        if self.alive:
            return
        self._cleanup()
        env = dict(os.environ)
        env.update(self.extra_env)
        env["HF_HUB_OFFLINE"] = "1"       # never a hub call from the engine
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")
            self._log_offset = log.tell()  # a crash report quotes this child's lines only
        except OSError:  # a read-only or full folder: the engine runs, without a log
            log = open(os.devnull, "ab")
            self._log_offset = 0
        try:
            kwargs = {}
            if os.name == "nt":
                kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
            self._proc = subprocess.Popen(
                python_argv("-m", self.server_module),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, cwd=str(REPO_ROOT),
                close_fds=True, **kwargs,
            )
        finally:
            log.close()
        self._ready.clear()
        self._exit_code = None
        self._events = queue.Queue()
        self._pongs = queue.Queue()
        self._reader = threading.Thread(target=self._read_loop, args=(self._proc,),
                                        name=f"{self.log_name.removesuffix('.log')}-reader", daemon=True)
        self._reader.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the child to exit (cancelling any job); kill it if it does not within ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._send({"op": "shutdown"})
            except AtelierError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._cleanup()

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """Hard-stop the child (as a crash would)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def __enter__(self) -> "EngineHost":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _cleanup(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for s in (proc.stdin, proc.stdout):
                try:
                    if s:
                        s.close()
                except OSError:
                    pass
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(2)
        self._reader = None

    def _read_loop(self, proc: subprocess.Popen) -> None:
        stream = proc.stdout
        while True:
            try:
                msg = P.read_message(stream)
            except (ValueError, OSError):
                msg = None
            if msg is None:
                break
            ev = P.event_from_wire(*msg)
            if ev.type == "ready":
                self._ready_info = ev.data
                self._ready.set()
            elif ev.type == P.PONG:
                self._pongs.put(ev)
            else:
                self._events.put(ev)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            code = None
        self._exit_code = code
        self._events.put(Event(_EXIT, None, {"code": code}))
        self._pongs.put(Event(_EXIT, None, {"code": code}))

    def _send(self, header: dict, blobs: dict[str, bytes] | None = None) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise AtelierError(f"The {self.label} is not running.")
        try:
            with self._write_lock:
                P.write_message(proc.stdin, header, blobs)
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise AtelierError(f"The {self.label} stopped unexpectedly.") from exc

    def _crash_message(self, code, hint: str | None = None) -> str:
        """How the child ended, what happens next (``hint``, default ``restart_hint``), its log and
        the log's last lines, in one line."""
        how = "was killed" if code is None else (
            f"was killed ({_signal_name(code)})" if code < 0 else f"exited with code {code}")
        last = self.log_tail(3)
        tail = f" Its last log lines: {' | '.join(last)}" if last else ""
        hint = self.restart_hint if hint is None else hint
        return (f"The {self.label} {how}, perhaps out of memory, a driver crash or a broken model file. "
                f"{hint + ' ' if hint else ''}(log: {self.log_path}).{tail}")

    def log_tail(self, n: int = 3, max_chars: int = 300) -> list[str]:
        """The last ``n`` non-empty lines this child wrote to its log (each cut to ``max_chars``)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                data = f.read()[-64 * 1024:]
        except OSError:
            return []
        lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
        # llama.cpp's asserts name their source by the build folder's path: keep from "llama.cpp/" on
        return [re.sub(r"^\S*/vendor/(llama\.cpp/)", r"\1", ln)[:max_chars] for ln in lines[-n:]]

    def _wait_ready(self, token: CancelToken | None) -> Event | None:
        deadline = time.monotonic() + self.start_timeout
        while not self._ready.wait(0.05):
            if self._proc is None or (self._proc.poll() is not None and self._events.qsize()):
                break
            if token is not None and token.cancelled:
                return Event(P.CANCELLED, None, {"step": 0, "cancel_seen_at_step": 0, "decoded": False})
            if time.monotonic() > deadline:
                self.kill()
                return Event(P.ERROR, None, {"kind": "crashed", "message": (
                    f"The {self.label} did not start within {self.start_timeout:.0f} s (log: {self.log_path}).")})
        if not self._ready.is_set():
            code = self._proc.poll() if self._proc else None
            self.crashes += 1
            return Event(P.ERROR, None, {"kind": "crashed", "message": self._crash_message(code)})
        return None

    # -- requests -----------------------------------------------------------------------------
    def ping(self, timeout: float = 30.0) -> dict:
        """The engine's stats (what its server's ``ping`` reports: pid, loads, model, ...)."""
        if not self.alive:
            self.start()
        if self._wait_ready(None) is not None:
            raise AtelierError(f"The {self.label} is not running.")
        self._send({"op": "ping", "id": "ping"})
        try:
            ev = self._pongs.get(timeout=timeout)
        except queue.Empty:
            raise AtelierError(f"The {self.label} does not answer.") from None
        if ev.type == _EXIT:
            raise AtelierError(f"The {self.label} stopped unexpectedly.")
        return ev.data

    def _job(self, header: dict, blobs: dict, token: CancelToken | None) -> Iterator[Event]:
        if not self._job_lock.acquire(blocking=False):
            raise AtelierError(f"The {self.label} is busy with another job.")
        try:
            yield from self._run_job(header, blobs, token)
        finally:
            self._job_lock.release()

    def _run_job(self, header, blobs, token):
        if not self.alive:
            self.start()
        failed = self._wait_ready(token)
        if failed is not None:
            yield failed
            return
        job = uuid.uuid4().hex[:12]
        header = dict(header, id=job)
        try:
            self._send(header, blobs)
        except AtelierError:
            self.crashes += 1
            yield Event(P.ERROR, job, {"kind": "crashed", "message": self._crash_message(self._proc.poll())})
            return
        cancel_sent: float | None = None
        finished = False
        try:
            while True:
                if token is not None and token.cancelled and cancel_sent is None:
                    cancel_sent = time.monotonic()
                    try:
                        self._send({"op": "cancel", "id": job})
                    except AtelierError:
                        pass
                try:
                    ev = self._events.get(timeout=0.02)
                except queue.Empty:
                    if cancel_sent is not None and self.cancel_grace is not None and \
                            time.monotonic() - cancel_sent > self.cancel_grace:
                        finished = True
                        self.kill()  # it did not stop in time: the process boundary is the guarantee
                        self._cleanup()
                        yield Event(P.CANCELLED, job, {"killed": True})
                        return
                    continue
                if ev.type == _EXIT:
                    finished = True
                    self.crashes += 1
                    yield Event(P.ERROR, job, {"kind": "crashed", "message": self._crash_message(ev.get("code"))})
                    return
                if ev.job != job:
                    continue  # left over from an abandoned job
                if ev.terminal:
                    finished = True
                yield ev
                if finished:
                    return
        finally:
            if not finished:  # the caller stopped iterating: cancel the job and let it finish in the child
                try:
                    self._send({"op": "cancel", "id": job})
                except AtelierError:
                    pass
