"""The diffusion engine's child process: ``python -m desktop_app.engines.diffusion.server``.

Reads requests on stdin and writes events on a private copy of stdout (fd 1 itself is pointed at
stderr, so a stray ``print`` in a library cannot corrupt the protocol). A reader thread receives
requests while the main thread computes, so ``cancel`` lands within one denoising step: the
step callback raises a private exception, which leaves the pipeline before the VAE decode.

Test hooks (environment, read once at start; never set by the app):
  ``ATELIER_FAULT_OOM=N``        the first N pipeline calls raise ``torch.OutOfMemoryError`` at the
                                 torch boundary (this machine has no GPU to run out of memory).
  ``ATELIER_TEST_STEP_DELAY=S``  sleep S seconds in each step callback (makes "mid-run" certain).
"""

from __future__ import annotations

import os
import queue
import sys

from desktop_app.core.errors import Cancelled
from desktop_app.engines.diffusion import protocol as P
from desktop_app.engines.diffusion.engine import Engine, _error_event, _Interrupted, _Out
from desktop_app.engines.diffusion.post_jobs import run_remove_bg, run_upscale
from desktop_app.engines.diffusion.protocol import Event, GenerateRequest, ModelSpec, RemoveBgRequest, UpscaleRequest
from desktop_app.engines.wire import child_streams, job_loop, start_reader


def _load(engine: Engine, out, job, header, blobs) -> None:
    engine.load(ModelSpec.from_dict(header["model"]), job)
    out.send(Event(P.DONE, job, {}))


def _unload(engine: Engine, out, job, header, blobs) -> None:
    engine.post_models.clear()  # the upscaler/segmenter too
    engine.unload()
    out.send(Event(P.UNLOADED, job, {}))
    out.send(Event(P.DONE, job, {}))


# One handler per request op (the wire protocol's table; see protocol.py)
HANDLERS = {
    "load": _load,
    "unload": _unload,
    "generate": lambda engine, out, job, h, b: engine.generate(job, GenerateRequest.from_wire(h["request"], b)),
    "upscale": lambda engine, out, job, h, b: run_upscale(engine, job, UpscaleRequest.from_wire(h["request"], b)),
    "remove_bg": lambda engine, out, job, h, b: run_remove_bg(engine, job, RemoveBgRequest.from_wire(h["request"], b)),
}


def main() -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    proto_in, proto_out = child_streams()
    out = _Out(proto_out)
    engine = Engine(out)
    jobs: queue.Queue = queue.Queue()
    start_reader(proto_in, jobs, engine.request_cancel,
                 lambda job: out.send(Event(P.PONG, job, engine.stats())))
    # Warm the heavy imports while the parent prepares its first request.
    import torch  # noqa: F401
    import diffusers  # noqa: F401

    out.send(Event("ready", None, {"pid": os.getpid(), "torch": torch.__version__,
                                    "cuda": torch.cuda.is_available()}))
    def run(op, job, header, blobs) -> None:
        engine._begin(job)
        try:
            handler = HANDLERS.get(op)
            if handler is None:
                out.send(Event(P.ERROR, job, {"kind": "invalid_request", "message": f"unknown op {op!r}"}))
            else:
                handler(engine, out, job, header, blobs)
        except _Interrupted as it:
            out.send(Event(P.CANCELLED, job, {"step": it.step, "cancel_seen_at_step": engine.cancel_seen_at,
                                               "decoded": False}))
        except Cancelled:  # post-processing jobs stop between tiles/stages
            out.send(Event(P.CANCELLED, job, {"step": engine.current_step, "cancel_seen_at_step": engine.cancel_seen_at,
                                               "decoded": False}))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, the engine stays up
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            out.send(_error_event(job, exc))
        finally:
            engine._end()

    job_loop(jobs, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
