"""Upscale / remove background from the gallery, run by the diffusion engine's child process
(``EngineProcess.upscale`` / ``.remove_background``) in the studio's "image" model thread, so
torch/spandrel/onnxruntime never load in the GUI process and a warm child is reused.

The job drains the engine's events through the same path as generation (``jobs._run_events``)
and yields the same items (:mod:`desktop_app.ui.studio.events`): Progress (with the stage as
``text``), Notice, Result, EngineError. The result PNG is encoded once, in the child, with the
gallery's metadata (the source's prompt and settings, the operation, the source file).
"""

from __future__ import annotations

from pathlib import Path

from desktop_app.ui.studio import jobs as studio_jobs

OPERATIONS = {
    "upscale": ("upscale", "Upscaled"),
    "remove-bg": ("background_removal", "Background removed"),
}


def result_metadata(op: str, source: Path, model_id: str, source_params: dict | None) -> dict:
    """What the result PNG carries: the source's parameters, then what was done to it."""
    params = {k: v for k, v in (source_params or {}).items() if k != "source"}
    params.update({"operation": OPERATIONS[op][1], "source_image": str(source), "postprocess_model": model_id})
    return params


def postprocess_job(op: str, source: Path, out: Path, model_path: str, model_id: str, source_params: dict | None,
                    provider: studio_jobs.EngineProvider | None = None, allow_pickle: bool = False):
    """fn(state, token): ``op`` on ``source`` in the engine child; the result is saved to ``out``."""
    if op not in OPERATIONS:
        raise ValueError(op)

    def job(state, token):
        from desktop_app.engines.diffusion.metadata import parse_parameters
        from desktop_app.engines.diffusion.protocol import RemoveBgRequest, UpscaleRequest

        eng = studio_jobs.engine_in(state, provider)
        if not getattr(eng, "alive", False):
            yield studio_jobs.E.STARTING
        data = Path(source).read_bytes()
        src_params = source_params
        if src_params is None:  # the gallery had not read it yet (lazy): read it here, off the GUI thread
            try:
                src_params = parse_parameters(data)
            except Exception:  # noqa: BLE001 - a source without metadata is fine
                src_params = None
        meta = result_metadata(op, source, model_id, src_params)
        if op == "upscale":
            events = eng.upscale(UpscaleRequest(model_path=model_path, image=data, allow_pickle=allow_pickle,
                                                metadata=meta), token)
        else:
            events = eng.remove_background(RemoveBgRequest(model_path=model_path, image=data, soft=True,
                                                           metadata=meta), token)
        yield from studio_jobs._run_events(events, token, out=out)
        return "done"

    return job
