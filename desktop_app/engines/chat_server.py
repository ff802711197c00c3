"""The chat engine's child process: ``python -m desktop_app.engines.chat_server``.

Runs one :class:`desktop_app.engines.chat.ChatEngine` (llama.cpp) so that a model which breaks the
engine (a ``GGML_ASSERT`` on a malformed GGUF, a driver fault, the OOM killer) ends this process
only; the app reports it and starts a fresh child for the next message. The model's memory lives
here, and all of it goes back to the OS when this process exits.

Same framing as the image engine (:mod:`desktop_app.engines.wire`): requests on stdin, events on a
private copy of stdout (fd 1 points at stderr, so llama.cpp's own prints never corrupt the
protocol). A reader thread takes ``cancel``/``ping``/``shutdown`` while the main thread computes.

Requests (``op``), each answered by events ending in exactly one ``done``/``cancelled``/``error``:
  ``load`` {config: LoadConfig dict}  -> ``load_progress`` {fraction}*, ``loaded`` {info}, ``done``
  (one handler per op, in a table; :func:`desktop_app.engines.wire.job_loop` runs them in order)
  ``chat`` {messages, params, overflow} -> ``chat`` {kind: answer|thinking|reclassify, text}* (text
                                           deltas of one kind joined, sent at most once a frame),
                                           ``truncated`` {truncation}, ``done`` {stats (with text)}
  ``context_usage`` {messages}        -> ``done`` {prompt_tokens, n_ctx}
  ``unload``                          -> ``done``
  ``ping`` -> ``pong`` {pid, loaded, model_path};  ``cancel`` {id};  ``shutdown``

Error kinds: ``context_overflow`` (prompt_tokens, n_ctx, budget, message), ``model_format``,
``invalid_request``, ``internal``.

Test hooks (environment, never set by the app): ``ATELIER_TEST_CHAT_DELAY=S`` sleeps S seconds
per streamed token (makes "mid-reply" certain).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import traceback

from desktop_app.core.errors import AtelierError, Cancelled, ModelFormatError
from desktop_app.engines import wire as P
from desktop_app.engines.base import CancelToken
from desktop_app.engines.wire import Event, EventWriter, child_streams, job_loop, start_reader

PROGRESS_STEP = 0.01  # send a load fraction only when it moved by 1 %


class _Out(EventWriter):
    def send(self, type_: str, job: str | None, **data) -> None:  # type: ignore[override]
        super().send(Event(type_, job, data))


class _Jobs:
    """The current job's id and cancel token, shared with the reader thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: str | None = None
        self.token = CancelToken()
        self.cancelled_early: set[str] = set()

    def begin(self, job: str | None) -> CancelToken:
        with self._lock:
            self.current = job
            self.token = CancelToken()
            if job in self.cancelled_early:
                self.cancelled_early.discard(job)
                self.token.cancel()
            return self.token

    def cancel(self, job: str | None) -> None:
        with self._lock:
            if job is None or job == self.current:
                self.token.cancel()
            elif job:
                self.cancelled_early.add(job)


def _error(out: _Out, job, exc: BaseException) -> None:
    from desktop_app.engines.chat import ContextOverflow

    if isinstance(exc, ContextOverflow):
        out.send(P.ERROR, job, kind="context_overflow", message=str(exc), prompt_tokens=exc.prompt_tokens,
                 n_ctx=exc.n_ctx, budget=exc.budget)
    elif isinstance(exc, ModelFormatError):
        out.send(P.ERROR, job, kind="model_format", message=str(exc))
    elif isinstance(exc, AtelierError):
        out.send(P.ERROR, job, kind="invalid_request", message=str(exc))
    else:
        traceback.print_exc()
        out.send(P.ERROR, job, kind="internal", message=f"{type(exc).__name__}: {exc}"[:2000])


def _load(engine, out: _Out, job, header: dict, token: CancelToken) -> None:
    from desktop_app.engines.chat import LoadConfig

    last = [-1.0]

    def progress(frac: float) -> None:
        if frac >= 1.0 or frac - last[0] >= PROGRESS_STEP:
            last[0] = frac
            out.send("load_progress", job, fraction=round(float(frac), 4))

    engine.load(LoadConfig.from_dict(header.get("config") or {}), token, on_progress=progress)
    out.send("loaded", job, info=engine.info())
    out.send(P.DONE, job)


def _context_usage(engine, out: _Out, job, header: dict) -> None:
    n, n_ctx = engine.context_usage(header.get("messages") or [])
    out.send(P.DONE, job, prompt_tokens=n, n_ctx=n_ctx)


def _embed(engine, out: _Out, job, header: dict) -> None:
    from desktop_app.engines.chat_embed import embed

    vectors, n = embed(engine, list(header.get("texts") or []))
    out.send(P.DONE, job, vectors=vectors, prompt_tokens=n)


FRAME_S = 1 / 60  # text deltas are sent at most once a frame: no screen shows tokens faster


def _chat(engine, out: _Out, job, header: dict, token: CancelToken, delay: float) -> None:
    if header.get("raw_prompt") is not None:  # /v1/completions: no chat template
        from desktop_app.engines.chat_raw import complete_raw

        gen = complete_raw(engine, header["raw_prompt"], header.get("params") or {}, token)
    else:
        gen = engine.chat(header.get("messages") or [], header.get("params") or {}, token,
                          overflow=header.get("overflow") or "truncate_oldest")
    pending_kind, pending, last = "", [], 0.0  # the first text goes out at once (time to first token)

    def flush() -> None:
        nonlocal pending_kind, pending, last
        if pending:
            out.send("chat", job, kind=pending_kind, text="".join(pending))
            last = time.perf_counter()
        pending_kind, pending = "", []

    try:
        for ev in gen:
            if ev.type in ("answer", "thinking"):
                if ev.type != pending_kind:
                    flush()
                    pending_kind = ev.type
                pending.append(ev.text)
                if delay or time.perf_counter() - last >= FRAME_S:
                    flush()
                if delay:
                    token.wait(delay)
                continue
            flush()  # reclassify, truncated and done keep their order after the text before them
            if ev.type == "truncated":
                out.send("truncated", job, truncation=ev.truncation.to_dict())
            elif ev.type == "done":
                out.send(P.DONE, job, stats=ev.stats.to_dict(with_text=True))
            else:
                out.send("chat", job, kind=ev.type, text=ev.text)
    finally:
        flush()
        gen.close()


class _NoSuppress:
    """Stands in for llama-cpp-python's ``suppress_stdout_stderr``, which points fd 2 at /dev/null
    while a model loads: a ``GGML_ASSERT`` there would then abort without a word. Our stderr is the
    engine's log; llama.cpp's ordinary chatter is still silenced by its log callback (verbose=False)."""

    def __init__(self, disable: bool = True) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _keep_abort_messages() -> None:
    """Imports llama_cpp (warming it while the parent prepares its first request) so that an abort
    leaves its one-line reason in the log, without ggml's gdb backtrace after it."""
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    import llama_cpp._internals
    import llama_cpp.llama

    llama_cpp.llama.suppress_stdout_stderr = _NoSuppress
    llama_cpp._internals.suppress_stdout_stderr = _NoSuppress


def main() -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"
    proto_in, proto_out = child_streams()
    out = _Out(proto_out)
    jobs = _Jobs()
    todo: queue.Queue = queue.Queue()
    delay = float(os.environ.get("ATELIER_TEST_CHAT_DELAY") or 0)

    from desktop_app.engines.chat import ChatEngine

    engine = ChatEngine()
    start_reader(proto_in, todo, jobs.cancel, lambda job: out.send(
        P.PONG, job, pid=os.getpid(), loaded=engine.loaded,
        model_path=engine.config.model_path if engine.config else None), name="chat-engine-reader")
    _keep_abort_messages()

    out.send(P.READY, None, pid=os.getpid())
    handlers = {
        "load": lambda job, header, token: _load(engine, out, job, header, token),
        "chat": lambda job, header, token: _chat(engine, out, job, header, token, delay),
        "context_usage": lambda job, header, token: _context_usage(engine, out, job, header),
        "embed": lambda job, header, token: _embed(engine, out, job, header),
        "unload": lambda job, header, token: (engine.unload(), out.send(P.DONE, job)),
    }

    def run(op, job, header, _blobs) -> None:
        token = jobs.begin(job)
        try:
            handler = handlers.get(op)
            if handler is None:
                out.send(P.ERROR, job, kind="invalid_request", message=f"unknown op {op!r}")
            else:
                handler(job, header, token)
        except Cancelled:
            out.send(P.CANCELLED, job)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - reported to the parent; the engine stays up
            _error(out, job, exc)
        finally:
            jobs.begin(None)

    job_loop(todo, run)
    t0 = time.perf_counter()
    engine.unload()
    print(f"chat engine: unloaded in {time.perf_counter() - t0:.2f} s, exiting", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
