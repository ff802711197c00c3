"""Super resolution with spandrel: load a model from .safetensors, upscale an image in tiles.

Qt-free and torch-lazy: importing this module costs nothing; torch and spandrel are imported
inside the functions, so the GUI process never loads them (the diffusion child process, or the
CLI, hosts this engine).

    model = load_upscaler(path)                 # UpscaleModel (architecture, scale, device, dtype)
    for ev in upscale(image, model, tile=256, overlap=32, token=token):
        if isinstance(ev, TileDone): ...         # progress, one per tile
        elif isinstance(ev, UpscaleResult): ...  # last event: ev.image
    image = upscale_image(image, model)        # the same, run to the end

Tiling: the image is cut into a grid of core boxes; each is run with ``overlap`` pixels of real
context on every side (never more than ``tile`` pixels a side in all) and only its core is kept,
so a tile sees the same neighbourhood as the whole image would and the seams vanish once the
overlap covers the network's receptive field. Cancel is checked between tiles.
"""

from __future__ import annotations

import math
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator

from PIL import Image

from desktop_app.core.errors import AtelierError, ModelFormatError
from desktop_app.engines.base import CancelToken

DEFAULT_TILE = 256
DEFAULT_OVERLAP = 32
MIN_CORE = 16  # smallest useful core (tile - 2 * overlap)


@dataclass
class TileDone:
    """Progress: tile `index` (1-based) of `total` is done; `box` is its core in input pixels."""

    index: int
    total: int
    box: tuple[int, int, int, int]


@dataclass
class UpscaleResult:
    """The last event of ``upscale``."""

    image: Image.Image
    scale: int  # the scale of the output relative to the input
    model_scale: int
    tiles: int
    seconds: float


@dataclass
class UpscaleModel:
    """A loaded super-resolution model (a spandrel ImageModelDescriptor underneath)."""

    path: Path
    descriptor: Any = field(repr=False)
    architecture: str
    scale: int
    purpose: str
    input_channels: int
    output_channels: int
    device: str
    dtype: str
    tiling: str  # supported | discouraged | internal (spandrel's advice)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "architecture": self.architecture,
            "scale": self.scale,
            "purpose": self.purpose,
            "input_channels": self.input_channels,
            "output_channels": self.output_channels,
            "device": self.device,
            "dtype": self.dtype,
            "tiling": self.tiling,
        }


# --------------------------------------------------------------------------------------------
# spandrel import (without torchvision)


def _torchvision_standin() -> dict[str, types.ModuleType]:
    """Minimal modules standing in for torchvision while spandrel's registry is imported.

    spandrel 0.4 imports ``torchvision.transforms.functional`` at import time for two
    architectures we do not run (LaMa inpainting: ``rotate``; RestoreFormer: ``normalize``), and
    PyPI's torchvision does not load beside our torch build. ``normalize`` is implemented here;
    ``rotate`` says what is missing if anything ever calls it.
    """
    import enum

    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    def normalize(tensor, mean, std, inplace=False):
        import torch

        m = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        s = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return tensor.sub_(m).div_(s) if inplace else (tensor - m) / s

    def rotate(*_args, **_kwargs):
        raise AtelierError("This model needs torchvision (image rotation), which Atelier does not ship.")

    functional.InterpolationMode = InterpolationMode
    functional.normalize = normalize
    functional.rotate = rotate
    transforms.functional = functional
    tv.transforms = transforms
    return {m.__name__: m for m in (tv, transforms, functional)}


def _import_spandrel():
    """Import spandrel; if torchvision is missing or broken, import it over a stand-in.

    The stand-in is removed from ``sys.modules`` afterwards, so that libraries probing for
    torchvision (diffusers, transformers) still see that it is absent.
    """
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    try:
        import spandrel

        return spandrel
    except ModuleNotFoundError as exc:
        if exc.name == "spandrel":
            raise AtelierError(
                "Upscaling needs the 'spandrel' package: pip install --no-deps spandrel einops"
            ) from exc
        if not (exc.name or "").startswith("torchvision"):
            raise
    except (ImportError, RuntimeError) as exc:  # a torchvision that does not match torch
        if "torchvision" not in str(exc):
            raise
    # drop what the failed attempt left behind, then retry over the stand-in
    for name in [m for m in sys.modules if m == "spandrel" or m.startswith(("spandrel.", "torchvision"))]:
        del sys.modules[name]
    standin = _torchvision_standin()
    sys.modules.update(standin)
    try:
        import spandrel
    finally:
        for name in standin:
            if sys.modules.get(name) is standin[name]:
                del sys.modules[name]
    return spandrel


# --------------------------------------------------------------------------------------------
# loading


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def load_upscaler(path: str | Path, *, allow_pickle: bool = False, device: str = "cpu",
                  half: bool | None = None) -> UpscaleModel:
    """Load a super-resolution model that spandrel recognises (ESRGAN, Real-ESRGAN, SwinIR, ...).

    ``device``: ``cpu`` (fp32), ``cuda``, ``mps`` or ``auto``. ``half``: fp16 on a GPU (default:
    when the architecture supports it); always fp32 on the CPU.
    """
    from desktop_app.core.model_files import read_safetensors_header, refuse_pickle

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelFormatError(f"No upscaling model file at {path}.")
    refuse_pickle(path, allow_pickle)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        read_safetensors_header(path)  # clear error for truncated or non-safetensors files
    elif not allow_pickle:
        raise ModelFormatError(
            f"{path.name}: upscaling models are read from .safetensors files "
            f"(got '{suffix or 'no suffix'}')."
        )

    spandrel = _import_spandrel()
    import torch

    try:
        desc = spandrel.ModelLoader().load_from_file(str(path))
    except spandrel.UnsupportedModelError as exc:
        raise ModelFormatError(
            f"{path.name} is not a super-resolution model that Atelier (spandrel "
            f"{spandrel.__version__}) recognises."
        ) from exc
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ModelFormatError(f"{path.name}: cannot load the upscaling model: {exc}") from exc
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise ModelFormatError(
            f"{path.name} is a {desc.architecture.name} model ({desc.purpose}), not an image-to-image "
            "upscaler."
        )

    dev = _pick_device(device)
    dtype = torch.float32
    if dev != "cpu":
        if half is None:
            half = bool(desc.supports_half)
        if half and desc.supports_half:
            dtype = torch.float16
    try:
        desc.to(torch.device(dev), dtype=dtype)
    except (RuntimeError, AssertionError) as exc:
        raise AtelierError(f"Cannot move the upscaling model to {dev}: {exc}") from exc
    desc.eval()
    return UpscaleModel(
        path=path,
        descriptor=desc,
        architecture=desc.architecture.name,
        scale=int(desc.scale),
        purpose=str(desc.purpose),
        input_channels=int(desc.input_channels),
        output_channels=int(desc.output_channels),
        device=dev,
        dtype=str(dtype).replace("torch.", ""),
        tiling=desc.tiling.name.lower(),
    )


# --------------------------------------------------------------------------------------------
# tiling


def _spans(length: int, core: int) -> list[tuple[int, int]]:
    """Split [0, length) into ceil(length / core) nearly equal spans."""
    n = max(1, math.ceil(length / core))
    step = math.ceil(length / n)
    return [(a, min(a + step, length)) for a in range(0, length, step)]


def tile_boxes(width: int, height: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Core boxes (x0, y0, x1, y1) covering the image; each runs with ``overlap`` context.

    ``tile <= 0`` or an image that fits in one tile: one box, the whole image.
    """
    if tile <= 0 or (width <= tile and height <= tile):
        return [(0, 0, width, height)]
    if overlap < 0:
        raise AtelierError(f"Tile overlap must be 0 or more (got {overlap}).")
    core = tile - 2 * overlap
    if core < MIN_CORE:
        raise AtelierError(
            f"Tile size {tile} is too small for an overlap of {overlap}: use a tile of at least "
            f"{2 * overlap + MIN_CORE} pixels or a smaller overlap."
        )
    return [(x0, y0, x1, y1) for (y0, y1) in _spans(height, core) for (x0, x1) in _spans(width, core)]


def estimate_bytes_per_pixel(scale: int, dtype: str = "float32") -> int:
    """Working memory per input pixel of a tile, for an ESRGAN-sized net (64 features, 32-channel
    dense growth): the low-resolution feature maps alive at once plus two high-resolution ones.
    A deliberately generous heuristic (lighter models such as compact/SPAN use less)."""
    item = 2 if dtype in ("float16", "bfloat16") else 4
    return item * (640 + 128 * scale * scale)


def free_memory_bytes(device: str) -> int:
    """Memory free for tiles on ``device`` (CUDA: free VRAM; else available RAM)."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def auto_tile(model: UpscaleModel, free_bytes: int | None = None, *, budget: float = 0.5,
              cpu_max: int = 512) -> int:
    """The largest tile (multiple of 64, 128..2048; at most ``cpu_max`` on the CPU, where bigger
    tiles only make progress coarser) whose estimated memory fits ``budget`` of ``free_bytes``."""
    if free_bytes is None:
        free_bytes = free_memory_bytes(model.device)
    bpp = estimate_bytes_per_pixel(model.scale, model.dtype)
    side = int(math.sqrt(max(0.0, free_bytes * budget) / bpp)) // 64 * 64
    top = cpu_max if model.device == "cpu" else 2048
    return max(128, min(top, side))


def _to_uint8(t) -> "Any":
    import torch

    return (t.float().clamp(0, 1) * 255.0).round().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()


def upscale(image: Image.Image, model: UpscaleModel, *, tile: int = DEFAULT_TILE,
            overlap: int = DEFAULT_OVERLAP, scale: int | None = None,
            token: CancelToken | None = None) -> Generator[TileDone | UpscaleResult, None, Image.Image]:
    """Upscale ``image`` tile by tile; yields a TileDone per tile, then one UpscaleResult.

    ``tile`` is the largest square side (input pixels, overlap included) run at once; 0 runs the
    whole image in one pass. ``scale`` (default: the model's) may be smaller than the model's:
    the model's output is then resized down with Lanczos. An alpha channel is resized alongside.
    Raises Cancelled (between tiles) when ``token`` is cancelled. Returns the image too.
    """
    import numpy as np
    import torch

    start = time.perf_counter()
    token = token or CancelToken()
    s = model.scale
    target = s if scale is None else int(scale)
    if target < 1 or target > s:
        raise AtelierError(
            f"This model upscales {s}x; a scale of {target} is not possible with it "
            f"(choose 1 to {s}, or a model with a larger scale)."
        )
    w, h = image.size
    if w < 1 or h < 1:
        raise AtelierError("The image is empty.")

    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        src = rgba.convert("RGB")
    else:
        src = image
    src = src.convert("L" if model.input_channels == 1 else "RGB")
    arr = np.asarray(src, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    desc = model.descriptor
    device = torch.device(model.device)
    dtype = getattr(torch, model.dtype)
    full = torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0)  # uint8 1xCxHxW (CPU)

    boxes = tile_boxes(w, h, tile, overlap)
    out = np.zeros((h * s, w * s, model.output_channels), dtype=np.uint8)
    ov = 0 if len(boxes) == 1 else overlap
    for i, (x0, y0, x1, y1) in enumerate(boxes, 1):
        token.raise_if_cancelled()
        ix0, iy0 = max(0, x0 - ov), max(0, y0 - ov)
        ix1, iy1 = min(w, x1 + ov), min(h, y1 + ov)
        inp = full[:, :, iy0:iy1, ix0:ix1].to(device=device, dtype=dtype).div_(255.0)
        try:
            res = desc(inp)
        except torch.OutOfMemoryError as exc:
            raise AtelierError(
                f"Out of memory upscaling a {ix1 - ix0}x{iy1 - iy0} tile on {model.device}: "
                "use a smaller tile size."
            ) from exc
        ox0, oy0 = (x0 - ix0) * s, (y0 - iy0) * s
        res = res[:, :, oy0:oy0 + (y1 - y0) * s, ox0:ox0 + (x1 - x0) * s]
        out[y0 * s:y1 * s, x0 * s:x1 * s] = _to_uint8(res)
        del inp, res
        yield TileDone(index=i, total=len(boxes), box=(x0, y0, x1, y1))
    token.raise_if_cancelled()

    result = Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out[:, :, :3])
    size = (w * target, h * target)
    if target != s:
        result = result.resize(size, Image.Resampling.LANCZOS)
    if alpha is not None:
        result = result.convert("RGB")
        result.putalpha(alpha.resize(size, Image.Resampling.LANCZOS))
    yield UpscaleResult(image=result, scale=target, model_scale=s, tiles=len(boxes),
                        seconds=time.perf_counter() - start)
    return result


def upscale_image(image: Image.Image, model: UpscaleModel, **kwargs) -> Image.Image:
    """Run ``upscale`` to the end and return the image (kwargs as for ``upscale``)."""
    from desktop_app.engines.base import run_to_end

    return run_to_end(upscale(image, model, **kwargs))
