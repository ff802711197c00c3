"""`atelier upscale` and `atelier remove-bg`: the post-processing engines run in-process.

    atelier upscale IN OUT [--model ID_OR_PATH] [--scale N] [--tile N] [--json]
    atelier remove-bg IN OUT [--model ID_OR_PATH] [--mask-only] [--soft] [--json]

Progress goes to stderr; with ``--json`` stdout holds one object: ``out``, ``model``, ``scale``,
``size`` [w, h], ``seconds`` (and a few more details).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from desktop_app.commands import emit_json
from desktop_app.core.errors import AtelierError

TASK_WORDS = {"upscale": "upscaling", "background_removal": "background-removal"}
HOW_TO_GET = {
    "upscale": (
        "import a super-resolution .safetensors file (e.g. a Real-ESRGAN or 4x-UltraSharp model) with "
        "'atelier models import FILE', pull one from 'atelier models catalog --task upscale', or pass --model PATH"
    ),
    "background_removal": (
        "import an ONNX segmentation model (e.g. rembg's u2net.onnx or isnet-general-use.onnx) with "
        "'atelier models import FILE', pull one from 'atelier models catalog --task background_removal', "
        "or pass --model PATH"
    ),
}


def resolve_model(model: str | None, task: str):
    """The library record for ``--model`` (id or path), or the first installed model of ``task``."""
    from desktop_app.core.library import Library

    lib = Library()
    if model:
        rec = lib.resolve(model)
    else:
        recs = lib.list(task=task)
        if not recs:
            raise AtelierError(f"No {TASK_WORDS[task]} model is installed: {HOW_TO_GET[task]}.")
        rec = recs[0]
    if rec.task != task:
        raise AtelierError(
            f"'{rec.id}' is a {rec.task} model, not a {TASK_WORDS[task]} model: {HOW_TO_GET[task]}."
        )
    if not Path(rec.path).exists():
        raise AtelierError(f"The file of model '{rec.id}' is missing: {rec.path}. Remove it with 'atelier models rm {rec.id}'.")
    return rec


def open_image(path: str):
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path).expanduser()
    if not p.is_file():
        raise AtelierError(f"No image file at {p}.")
    try:
        with Image.open(p) as im:
            im.load()
            return ImageOps.exif_transpose(im)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise AtelierError(f"Cannot read the image {p}: {exc}") from exc


def save_image(image, path: str, *, needs_alpha: bool = False) -> Path:
    """Save by the file's suffix, atomically (a failed run never leaves half a file)."""
    from PIL import Image

    p = Path(path).expanduser()
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise AtelierError(f"Cannot write '{p.name}': unknown image type (use .png, .webp, .jpg or .tif).")
    if image.mode in ("RGBA", "LA") and fmt in ("JPEG", "BMP"):
        if needs_alpha:
            raise AtelierError(
                f"{fmt} files have no transparency: save the cut-out as .png or .webp (or use --mask-only)."
            )
        image = image.convert("RGB")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.part")
    try:
        image.save(tmp, format=fmt)
        os.replace(tmp, p)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise AtelierError(f"Cannot write {p}: {exc}") from exc
    return p.resolve()


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_upscale(args) -> int:
    from desktop_app.core.settings import Settings
    from desktop_app.engines.upscale import DEFAULT_OVERLAP, TileDone, UpscaleResult, load_upscaler, upscale

    start = time.perf_counter()
    image = open_image(args.input)
    rec = resolve_model(args.model, "upscale")
    tile = int(args.tile or 0)
    if tile < 0:
        raise AtelierError(f"--tile must be 0 (no tiling) or a size in pixels (got {tile}).")
    overlap = min(DEFAULT_OVERLAP, tile // 8)
    _progress(f"upscale: loading {rec.id}")
    model = load_upscaler(rec.path, allow_pickle=bool(Settings().get("allow_pickle")), device="auto")
    _progress(f"upscale: {model.architecture} {model.scale}x on {model.device} ({model.dtype}), "
              f"{image.width}x{image.height}")
    result = None
    for ev in upscale(image, model, tile=tile, overlap=overlap, scale=args.scale):
        if isinstance(ev, TileDone):
            _progress(f"upscale: tile {ev.index}/{ev.total}")
        elif isinstance(ev, UpscaleResult):
            result = ev
    assert result is not None
    out = save_image(result.image, args.output)
    seconds = round(time.perf_counter() - start, 3)
    if args.json:
        emit_json({
            "out": str(out), "model": rec.id, "model_path": rec.path, "architecture": model.architecture,
            "scale": result.scale, "model_scale": result.model_scale,
            "size": list(result.image.size), "input_size": list(image.size),
            "tiles": result.tiles, "tile": tile, "overlap": overlap, "device": model.device,
            "seconds": seconds,
        })
    else:
        print(f"{out} ({result.image.width}x{result.image.height}, {result.scale}x, {seconds:.1f} s)")
    return 0


def cmd_remove_bg(args) -> int:
    from desktop_app.engines.background import BackgroundResult, MaskProgress, load_segmenter, remove_background

    start = time.perf_counter()
    image = open_image(args.input)
    rec = resolve_model(args.model, "background_removal")
    if not args.mask_only:  # fail before the work, not after it
        from PIL import Image

        fmt = Image.registered_extensions().get(Path(args.output).suffix.lower())
        if fmt in ("JPEG", "BMP"):
            raise AtelierError(
                f"{fmt} files have no transparency: save the cut-out as .png or .webp (or use --mask-only)."
            )
    _progress(f"remove-bg: loading {rec.id}")
    model = load_segmenter(rec.path)
    result = None
    for ev in remove_background(image, model, soft=args.soft, mask_only=args.mask_only):
        if isinstance(ev, MaskProgress):
            _progress(f"remove-bg: {ev.stage} {int(ev.fraction * 100)}%")
        elif isinstance(ev, BackgroundResult):
            result = ev
    assert result is not None
    out = save_image(result.image, args.output, needs_alpha=not args.mask_only)
    seconds = round(time.perf_counter() - start, 3)
    if args.json:
        emit_json({
            "out": str(out), "model": rec.id, "model_path": rec.path, "scale": 1,
            "size": list(result.image.size), "mask_only": bool(args.mask_only), "soft": bool(args.soft),
            "profile": model.profile.name, "seconds": seconds,
        })
    else:
        print(f"{out} ({result.image.width}x{result.image.height}, {'mask' if args.mask_only else 'cut-out'}, "
              f"{seconds:.1f} s)")
    return 0
