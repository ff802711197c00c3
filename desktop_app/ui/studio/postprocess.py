"""Upscale / remove background from the gallery, run by the diffusion engine's child process
(``EngineProcess.upscale`` / ``.remove_background``) in the studio's "image" model thread, so
torch/spandrel/onnxruntime never load in the GUI process and a warm child is reused.

Items yielded: the same dataclasses as generation (:mod:`desktop_app.ui.studio.events`): Progress
(with the stage as ``text``), Notice, Result, EngineError.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QImage

from desktop_app.ui.studio import events as E
from desktop_app.core.errors import Cancelled
from desktop_app.ui.studio import jobs as studio_jobs

OPERATIONS = {
    "upscale": ("upscale", "Upscaled"),
    "remove-bg": ("background_removal", "Background removed"),
}


def postprocess_job(op: str, source: Path, out: Path, model_path: str, model_id: str, source_params: dict | None,
                    provider: studio_jobs.EngineProvider | None = None, allow_pickle: bool = False):
    """fn(state, token): ``op`` on ``source`` in the engine child; the result is saved to ``out``."""
    if op not in OPERATIONS:
        raise ValueError(op)

    def job(state, token):
        from desktop_app.engines.diffusion import protocol as P
        from desktop_app.engines.diffusion.metadata import parse_parameters, png_with_metadata
        from desktop_app.engines.diffusion.protocol import RemoveBgRequest, UpscaleRequest

        eng = studio_jobs.engine_in(state, provider)
        if not getattr(eng, "alive", False):
            yield E.Progress(0, 0, text=E.STARTING.text)
        data = Path(source).read_bytes()
        if op == "upscale":
            events = eng.upscale(UpscaleRequest(model_path=model_path, image=data, allow_pickle=allow_pickle), token)
        else:
            events = eng.remove_background(RemoveBgRequest(model_path=model_path, image=data, soft=True), token)
        src_params = source_params
        if src_params is None:  # the gallery had not read it yet (lazy): read it here, off the GUI thread
            try:
                src_params = parse_parameters(data)
            except Exception:  # noqa: BLE001 - a source without metadata is fine
                src_params = None
        for ev in events:
            if token.cancelled:
                if not ev.terminal:
                    for rest in events:
                        if rest.terminal:
                            break
                raise Cancelled()
            if ev.type == P.PROGRESS:
                stage = ev.get("stage") or ""
                text = f"{'Tile' if stage == 'tile' else stage.capitalize()} {ev.get('step', 0)}/{ev.get('total', 0)}"
                yield E.Progress(ev.get("step", 0), ev.get("total", 0), text=text)
            elif ev.type == P.NOTICE and ev.get("message"):
                yield E.Notice(ev.get("kind", ""), ev.get("message"))
            elif ev.type == P.RESULT:
                params = {k: v for k, v in (src_params or {}).items() if k != "source"}
                params.update({"operation": OPERATIONS[op][1], "source_image": str(source),
                               "postprocess_model": model_id, "width": ev.get("width"), "height": ev.get("height")})
                if ev.get("scale"):
                    params["scale"] = ev.get("scale")
                png = png_with_metadata(ev.image, params)
                out.write_bytes(png)
                yield E.Result(out, params, QImage.fromData(png))
            elif ev.type == P.CANCELLED:
                raise Cancelled()
            elif ev.type == P.ERROR:
                yield E.EngineError(ev.get("kind", "internal"), ev.get("message", f"{OPERATIONS[op][1]} failed."))
                break
        if token.cancelled:
            raise Cancelled()
        return "done"

    return job
