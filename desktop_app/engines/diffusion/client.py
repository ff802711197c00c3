"""The parent side of the diffusion engine: start/stop the child process and run jobs on it.

Never imports torch or diffusers (the GUI process stays light and never stalls on them).
Blocking API meant for a worker QThread (or the CLI)::

    from desktop_app.engines.base import CancelToken
    from desktop_app.engines.diffusion.client import EngineProcess
    from desktop_app.engines.diffusion.protocol import GenerateRequest, ModelSpec

    engine = EngineProcess()           # nothing starts yet
    token = CancelToken()
    req = GenerateRequest(model=ModelSpec("/models/sd15"), prompt="a red fox", steps=20, seed=1)
    for ev in engine.generate(req, token):   # token.cancel() from any thread stops within a step
        if ev.type == "progress":  ev["step"], ev["total"], ev["it_s"]
        elif ev.type == "preview": ev.image  (JPEG bytes, ≤ 256 px)
        elif ev.type == "result":  ev.image  (PNG bytes with metadata), ev["params"]["seed"]
        elif ev.type == "notice":  ev["kind"], ev["message"]   (OOM retry, GPU fallback, tiling)
        elif ev.type == "error":   ev["kind"], ev["message"]   (terminal; kind "crashed" → restart())
        elif ev.type == "cancelled": ...                        (terminal; nothing was decoded)
        elif ev.type == "done":    ...                          (terminal)
    engine.stop()

Post-processing runs in the same child (no torch/onnxruntime in the caller), same events::

    req = UpscaleRequest(model_path="/models/4x.safetensors", image=png_bytes, scale=4)
    for ev in engine.upscale(req, token): ...              # progress per tile, result (PNG), done
    req = RemoveBgRequest(model_path="/models/u2net.onnx", image=png_bytes, soft=True)
    for ev in engine.remove_background(req, token): ...    # progress per stage, result (RGBA PNG), done

One job at a time per EngineProcess. Engine failures come back as ``error`` events, never as
exceptions; a crash of the child (kill -9, driver fault, OOM killer) yields an ``error`` event
of kind ``crashed`` and the next job starts a fresh child (or call ``restart()``).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from desktop_app.core.errors import AtelierError
from desktop_app.engines.base import CancelToken
from desktop_app.engines.diffusion import protocol as P
from desktop_app.engines.diffusion.protocol import Event, GenerateRequest, ModelSpec, RemoveBgRequest, UpscaleRequest

_EXIT = "_exit"
REPO_ROOT = Path(__file__).resolve().parents[3]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except (ValueError, AttributeError):
        return f"signal {-code}"


class EngineProcess:
    """A diffusion engine in a child process.

    ``env``: extra environment variables for the child (tests use the fault-injection hooks
    documented in ``server.py``). ``start_timeout``: seconds to wait for torch/diffusers to
    import in the child.
    """

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
        self.crashes = 0

    # -- life cycle -------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            from desktop_app.core.paths import get_paths

            self._log_path = get_paths().logs / "diffusion-engine.log"
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
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            kwargs = {}
            if os.name == "nt":
                kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "desktop_app.engines.diffusion.server"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, cwd=str(REPO_ROOT),
                close_fds=True, **kwargs,
            )
        finally:
            log.close()
        self._ready.clear()
        self._exit_code = None
        self._events = queue.Queue()
        self._pongs = queue.Queue()
        self._reader = threading.Thread(target=self._read_loop, args=(self._proc,), name="diffusion-engine-reader",
                                        daemon=True)
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

    def __enter__(self) -> "EngineProcess":
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
            raise AtelierError("The image engine is not running.")
        try:
            with self._write_lock:
                P.write_message(proc.stdin, header, blobs)
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise AtelierError("The image engine stopped unexpectedly.") from exc

    def _crash_message(self, code) -> str:
        how = "was killed" if code is None else (
            f"was killed ({_signal_name(code)})" if code < 0 else f"exited with code {code}")
        tail = ""
        try:
            lines = self.log_path.read_text("utf-8", "replace").strip().splitlines()
            last = [ln for ln in lines[-20:] if ln.strip()]
            if last:
                tail = f" Last log line: {last[-1].strip()[:300]}"
        except OSError:
            pass
        return (f"The image engine {how}, perhaps out of memory or a driver crash. It restarts on the next "
                f"generation (log: {self.log_path}).{tail}")

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
                    f"The image engine did not start within {self.start_timeout:.0f} s (log: {self.log_path}).")})
        if not self._ready.is_set():
            code = self._proc.poll() if self._proc else None
            self.crashes += 1
            return Event(P.ERROR, None, {"kind": "crashed", "message": self._crash_message(code)})
        return None

    # -- requests -----------------------------------------------------------------------------
    def ping(self, timeout: float = 30.0) -> dict:
        """The engine's stats (pid, loads, vae_decodes, model, modes, module_ids, busy)."""
        if not self.alive:
            self.start()
        if self._wait_ready(None) is not None:
            raise AtelierError("The image engine is not running.")
        self._send({"op": "ping", "id": "ping"})
        try:
            ev = self._pongs.get(timeout=timeout)
        except queue.Empty:
            raise AtelierError("The image engine does not answer.") from None
        if ev.type == _EXIT:
            raise AtelierError("The image engine stopped unexpectedly.")
        return ev.data

    def load(self, model: ModelSpec, token: CancelToken | None = None) -> Iterator[Event]:
        """Load (or keep) a model: ``loaded`` (only when it was not loaded yet) then ``done``."""
        return self._job({"op": "load", "model": model.to_dict()}, {}, token)

    def unload(self) -> Iterator[Event]:
        """Free the model (the child stays up): ``unloaded`` then ``done``."""
        return self._job({"op": "unload"}, {}, None)

    def generate(self, request: GenerateRequest, token: CancelToken | None = None) -> Iterator[Event]:
        """Run one generation job; yields events until exactly one terminal event."""
        return self._request_job("generate", request, token)

    def upscale(self, request: UpscaleRequest, token: CancelToken | None = None) -> Iterator[Event]:
        """Super resolution in the child: ``notice`` (kind "upscaler": model, tile), ``progress`` per
        tile (step = tile index, total = tiles), one ``result`` (PNG; data: width, height, scale,
        tiles, params), then ``done``; or ``cancelled`` (checked between tiles) / ``error``."""
        return self._request_job("upscale", request, token)

    def remove_background(self, request: RemoveBgRequest, token: CancelToken | None = None) -> Iterator[Event]:
        """Background removal in the child: ``progress`` per stage (step 1..3: preprocess,
        inference, postprocess), one ``result`` (PNG: RGBA cut-out, or the "L" mask with
        ``mask_only``), then ``done``; or ``cancelled`` / ``error``."""
        return self._request_job("remove_bg", request, token)

    def _request_job(self, op: str, request, token: CancelToken | None) -> Iterator[Event]:
        """Validate ``request`` (an invalid one ends at once in an ``invalid_request`` error event),
        then send it as job ``op``."""
        try:
            request.validate()
        except AtelierError as exc:
            return iter([Event(P.ERROR, None, {"kind": "invalid_request", "message": str(exc)})])
        header, blobs = request.to_wire()
        return self._job({"op": op, "request": header}, blobs, token)

    def _job(self, header: dict, blobs: dict, token: CancelToken | None) -> Iterator[Event]:
        if not self._job_lock.acquire(blocking=False):
            raise AtelierError("The image engine is busy with another job.")
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
        cancel_sent = False
        finished = False
        try:
            while True:
                if token is not None and token.cancelled and not cancel_sent:
                    cancel_sent = True
                    try:
                        self._send({"op": "cancel", "id": job})
                    except AtelierError:
                        pass
                try:
                    ev = self._events.get(timeout=0.02)
                except queue.Empty:
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
