"""Post-processing jobs in the image engine's child: super resolution and background removal of
one image, with the same events, cancel and PNG metadata as generation."""

from __future__ import annotations

import io
import time

from desktop_app.core.errors import AtelierError
from desktop_app.engines.diffusion import protocol as P
from desktop_app.engines.diffusion.protocol import RemoveBgRequest, UpscaleRequest
from desktop_app.core.cancel import CancelToken

from desktop_app.engines.diffusion.engine import Engine  # noqa: F401 - the type the jobs run on


def _open_input(data: bytes):
    from PIL import Image, ImageOps

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:
        raise AtelierError(f"Cannot read the image: {exc}") from exc
    text = {k: v for k, v in getattr(img, "text", {}).items() if isinstance(v, str)} if hasattr(img, "text") else {}
    return ImageOps.exif_transpose(img), text


def _png_bytes(image, text: dict[str, str] | None, metadata: dict | None, info_params: dict,
               **size) -> tuple[bytes, dict]:
    """The result PNG, encoded once, and the params its RESULT event reports: with the caller's
    ``metadata`` (plus the result's ``size`` fields) in both text chunks when given (those are the
    params), else with the source's own ``text`` chunks (the params say what ran)."""
    from PIL.PngImagePlugin import PngInfo

    if metadata is not None:
        from desktop_app.engines.diffusion.metadata import png_with_metadata

        params = {**metadata, **{k: v for k, v in size.items() if v is not None}}
        return png_with_metadata(image, params), params
    info = None
    if text:
        info = PngInfo()
        for k, v in text.items():
            info.add_itxt(k, v)
    buf = io.BytesIO()
    # compress_level 1 (as png_with_metadata): Pillow's default (6) took twice as long
    # (1.2 s against 0.6 s at 2048x2048).
    image.save(buf, format="PNG", pnginfo=info, compress_level=1)
    return buf.getvalue(), info_params


def _post_model(engine: "Engine", kind: str, key: tuple, load):
    """The cached upscaler/segmenter for ``key`` (one of each kind stays loaded)."""
    cached = engine.post_models.get(kind)
    if cached is not None and cached[0] == key:
        return cached[1], False
    engine.post_models.pop(kind, None)
    model = load()
    engine.post_models[kind] = (key, model)
    return model, True


def run_upscale(engine: "Engine", job: str, req: UpscaleRequest) -> None:
    from pathlib import Path

    from desktop_app.engines import upscale as U

    t_job = time.perf_counter()
    req.validate()
    path = Path(req.model_path).expanduser()
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns, req.device, req.allow_pickle)
    except OSError:
        key = (str(path), None, req.device, req.allow_pickle)
    model, fresh = _post_model(engine, "upscale", key,
                               lambda: U.load_upscaler(path, allow_pickle=req.allow_pickle, device=req.device))
    image, text = _open_input(req.image)
    tile = U.auto_tile(model) if req.tile is None else int(req.tile)
    overlap = int(req.overlap)
    if tile and tile - 2 * overlap < U.MIN_CORE:
        overlap = max(0, (tile - U.MIN_CORE) // 2)
    engine._emit(job, P.NOTICE, kind="upscaler", message=(
        f"{model.architecture} {model.scale}x on {model.device} ({model.dtype}), tile {tile or 'off'}"),
        model=model.to_dict(), loaded=fresh, tile=tile, overlap=overlap)
    token = CancelToken(engine.cancel_flag)
    result = None
    for ev in U.upscale(image, model, tile=tile, overlap=overlap, scale=req.scale, token=token):
        if isinstance(ev, U.TileDone):
            engine.current_step = ev.index
            engine._emit(job, P.PROGRESS, step=ev.index, total=ev.total, stage="tile", box=list(ev.box),
                         it_s=None, image_index=0, batch=1)
            if engine.step_delay and ev.index < ev.total:
                engine.cancel_flag.wait(engine.step_delay)
        elif isinstance(ev, U.UpscaleResult):
            result = ev
    assert result is not None
    params = {"op": "upscale", "model": path.name, "model_path": str(path), "scale": result.scale,
              "model_scale": result.model_scale, "tiles": result.tiles, "tile": tile, "overlap": overlap,
              "source_size": [image.width, image.height], "app": "Atelier"}
    png, params = _png_bytes(result.image, text, req.metadata, params, width=result.image.width,
                             height=result.image.height, scale=result.scale)
    engine._emit(job, P.RESULT, image=png, params=params, index=0, width=result.image.width,
                 height=result.image.height, mode=result.image.mode, scale=result.scale, tiles=result.tiles,
                 seconds=round(result.seconds, 4), model=model.to_dict())
    engine._emit(job, P.DONE, seconds=round(time.perf_counter() - t_job, 4), images=1)


def run_remove_bg(engine: "Engine", job: str, req: RemoveBgRequest) -> None:
    from pathlib import Path

    from desktop_app.engines import background as B

    t_job = time.perf_counter()
    req.validate()
    path = Path(req.model_path).expanduser()
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns, req.device)
    except OSError:
        key = (str(path), None, req.device)
    model, fresh = _post_model(engine, "remove_bg", key, lambda: B.load_segmenter(path, device=req.device))
    image, _text = _open_input(req.image)
    token = CancelToken(engine.cancel_flag)
    result = None
    stages = ("preprocess", "inference", "postprocess")
    for ev in B.remove_background(image, model, soft=req.soft, mask_only=req.mask_only, threshold=req.threshold,
                                  feather=req.feather, token=token):
        if isinstance(ev, B.MaskProgress):
            step = stages.index(ev.stage) + 1 if ev.stage in stages else 0
            engine.current_step = step
            engine._emit(job, P.PROGRESS, step=step, total=len(stages), stage=ev.stage, fraction=ev.fraction,
                         it_s=None, image_index=0, batch=1)
            if engine.step_delay and step < len(stages):
                engine.cancel_flag.wait(engine.step_delay)
                token.raise_if_cancelled()
        elif isinstance(ev, B.BackgroundResult):
            result = ev
    assert result is not None
    params = {"op": "remove_bg", "model": path.name, "model_path": str(path), "soft": result.soft,
              "mask_only": req.mask_only, "threshold": req.threshold, "app": "Atelier"}
    png, params = _png_bytes(result.image, None, req.metadata, params, width=result.image.width,
                             height=result.image.height)
    engine._emit(job, P.RESULT, image=png, params=params, index=0, width=result.image.width,
                 height=result.image.height, mode=result.image.mode, seconds=round(result.seconds, 4),
                 model=model.to_dict(), loaded=fresh)
    engine._emit(job, P.DONE, seconds=round(time.perf_counter() - t_job, 4), images=1)
