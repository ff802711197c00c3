"""Background removal with a local ONNX segmentation model run by onnxruntime.

Qt-free, and nothing is downloaded: the model is a file from the library (rembg's U2Net family,
IS-Net, BiRefNet/RMBG exports: one image in, the first output is the foreground map). Pre- and
post-processing follow rembg's, written here with numpy and PIL:

- input: RGB resized (Lanczos) to the model's input size (from the ONNX graph when static, else
  the profile's), scaled by its maximum, normalised with the profile's mean/std, NCHW float32;
- output: first output, channel 0; min-max normalised (U2Net, IS-Net) or passed through a
  sigmoid (BiRefNet); resized back to the image (Lanczos).

    model = load_segmenter(path)
    for ev in remove_background(image, model, soft=True, token=token): ...   # MaskProgress..., BackgroundResult
    cutout = cut_out(image, model)                                          # the same, run to the end

``soft`` keeps the model's continuous alpha with a slight feather (hair, fur, glass); without it
the mask is thresholded to hard 0/255 edges. ``mask_only`` returns the mask ("L") instead of the
RGBA cut-out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator

from PIL import Image, ImageFilter

from desktop_app.core.errors import AtelierError, ModelFormatError
from desktop_app.engines.base import CancelToken

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Profile:
    """How a family of segmentation models wants its input and output treated."""

    name: str
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    post: str  # "minmax" or "sigmoid"


# Matched against the lower-case file name, first hit wins; the last one is the default.
PROFILES: tuple[tuple[tuple[str, ...], Profile], ...] = (
    (("birefnet", "rmbg-2", "rmbg_2", "rmbg2"), Profile("birefnet", 1024, IMAGENET_MEAN, IMAGENET_STD, "sigmoid")),
    (("isnet", "rmbg-1", "rmbg_1", "rmbg1"), Profile("isnet", 1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), "minmax")),
    ((), Profile("u2net", 320, IMAGENET_MEAN, IMAGENET_STD, "minmax")),
)


def profile_for(path: Path) -> Profile:
    name = path.name.lower()
    for keys, prof in PROFILES:
        if not keys or any(k in name for k in keys):
            return prof
    return PROFILES[-1][1]


@dataclass
class MaskProgress:
    """Progress: `stage` is one of preprocess, inference, postprocess (fraction 0..1)."""

    stage: str
    fraction: float


@dataclass
class BackgroundResult:
    """The last event of ``remove_background``."""

    image: Image.Image  # RGBA cut-out, or the "L" mask when mask_only
    mask: Image.Image  # the "L" mask actually used (after soft/hard treatment)
    soft: bool
    seconds: float


@dataclass
class SegmentationModel:
    """A loaded ONNX segmentation model and how to feed it."""

    path: Path
    session: Any = field(repr=False)
    input_name: str
    input_size: tuple[int, int]  # (width, height)
    outputs: int
    profile: Profile
    providers: list[str]

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "input": self.input_name,
            "input_size": list(self.input_size),
            "outputs": self.outputs,
            "profile": self.profile.name,
            "providers": self.providers,
        }


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    avail = ort.get_available_providers()
    wanted = {"cpu": [], "cuda": ["CUDAExecutionProvider"], "auto": [
        "CUDAExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider"]}.get(device)
    if wanted is None:
        raise AtelierError(f"Unknown device '{device}' for background removal (cpu, cuda or auto).")
    if device == "cuda" and "CUDAExecutionProvider" not in avail:
        raise AtelierError("onnxruntime here has no CUDA support (install onnxruntime-gpu) - use the CPU.")
    return [p for p in wanted if p in avail] + ["CPUExecutionProvider"]


def load_segmenter(path: str | Path, *, device: str = "cpu", profile: Profile | None = None) -> SegmentationModel:
    """Open an ONNX segmentation model (rembg-style: 1x3xHxW in, mask first out)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelFormatError(f"No background-removal model file at {path}.")
    if path.suffix.lower() != ".onnx":
        raise ModelFormatError(
            f"{path.name}: background removal runs ONNX segmentation models (.onnx), e.g. rembg's u2net.onnx."
        )
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as exc:
        raise AtelierError("Background removal needs the 'onnxruntime' package: pip install onnxruntime") from exc

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: keep onnxruntime's warnings off the user's terminal
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=_providers(device))
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise ModelFormatError(f"{path.name} is not a usable ONNX model: {str(exc).splitlines()[0]}") from exc
    inputs = session.get_inputs()
    outs = session.get_outputs()
    if len(inputs) != 1 or not outs:
        raise ModelFormatError(
            f"{path.name}: expected a segmentation model with one image input, got {len(inputs)} inputs."
        )
    prof = profile or profile_for(path)
    shape = list(inputs[0].shape)
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise ModelFormatError(f"{path.name}: expected an input of shape 1x3xHxW, got {shape}.")
    h = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else prof.size
    w = shape[3] if isinstance(shape[3], int) and shape[3] > 0 else prof.size
    return SegmentationModel(
        path=path, session=session, input_name=inputs[0].name, input_size=(w, h), outputs=len(outs),
        profile=prof, providers=list(session.get_providers()),
    )


def _preprocess(image: Image.Image, model: SegmentationModel):
    import numpy as np

    im = image.convert("RGB").resize(model.input_size, Image.Resampling.LANCZOS)
    arr = np.asarray(im, dtype=np.float32)
    arr = arr / max(float(arr.max()), 1e-6)
    mean = np.asarray(model.profile.mean, dtype=np.float32)
    std = np.asarray(model.profile.std, dtype=np.float32)
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None], dtype=np.float32)


def _postprocess(raw, model: SegmentationModel, size: tuple[int, int]) -> Image.Image:
    """First output's channel 0 -> an "L" probability mask at the image's size."""
    import numpy as np

    pred = np.asarray(raw, dtype=np.float32)
    while pred.ndim > 2:
        pred = pred[0]
    if not np.all(np.isfinite(pred)):
        raise AtelierError(f"{model.path.name} produced an invalid mask (NaN or infinite values).")
    if model.profile.post == "sigmoid":
        pred = 1.0 / (1.0 + np.exp(-pred))
    else:
        lo, hi = float(pred.min()), float(pred.max())
        pred = (pred - lo) / (hi - lo) if hi > lo else np.zeros_like(pred)
    mask = Image.fromarray((pred * 255.0).round().clip(0, 255).astype(np.uint8), mode="L")
    return mask.resize(size, Image.Resampling.LANCZOS)


def predict_mask(image: Image.Image, model: SegmentationModel) -> Image.Image:
    """The model's soft foreground mask ("L", 0..255) at the image's size."""
    feed = {model.input_name: _preprocess(image, model)}
    raw = model.session.run(None, feed)[0]
    return _postprocess(raw, model, image.size)


def refine_mask(mask: Image.Image, *, soft: bool, threshold: int = 128, feather: float | None = None) -> Image.Image:
    """Hard: threshold to 0/255. Soft: keep the continuous alpha, feathered by a small blur
    (``feather`` pixels; default about 1 px per 1000 px of the image's longer side, at least 1)."""
    if not soft:
        return mask.point(lambda v: 255 if v >= threshold else 0)
    radius = feather if feather is not None else max(1.0, max(mask.size) / 1000.0)
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else mask.copy()


def remove_background(image: Image.Image, model: SegmentationModel, *, soft: bool = False,
                      mask_only: bool = False, threshold: int = 128, feather: float | None = None,
                      token: CancelToken | None = None
                      ) -> Generator[MaskProgress | BackgroundResult, None, Image.Image]:
    """Cut the subject out of ``image``; yields MaskProgress events, then one BackgroundResult.

    The result is an RGBA image (the original colours, the mask as alpha) or, with
    ``mask_only``, the mask. Raises Cancelled between stages when ``token`` is cancelled.
    """
    start = time.perf_counter()
    token = token or CancelToken()
    if image.width < 1 or image.height < 1:
        raise AtelierError("The image is empty.")
    if not 0 <= threshold <= 255:
        raise AtelierError(f"The mask threshold must be between 0 and 255 (got {threshold}).")
    token.raise_if_cancelled()
    feed = {model.input_name: _preprocess(image, model)}
    yield MaskProgress("preprocess", 0.1)
    token.raise_if_cancelled()
    raw = model.session.run(None, feed)[0]
    yield MaskProgress("inference", 0.8)
    token.raise_if_cancelled()
    mask = refine_mask(_postprocess(raw, model, image.size), soft=soft, threshold=threshold, feather=feather)
    if mask_only:
        out = mask
    else:
        out = image.convert("RGB")
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            # keep what was already transparent transparent
            from PIL import ImageChops

            mask = ImageChops.multiply(mask, image.convert("RGBA").getchannel("A"))
        out.putalpha(mask)
    yield MaskProgress("postprocess", 1.0)
    yield BackgroundResult(image=out, mask=mask, soft=soft, seconds=time.perf_counter() - start)
    return out


def cut_out(image: Image.Image, model: SegmentationModel, **kwargs) -> Image.Image:
    """Run ``remove_background`` to the end and return its image (kwargs as for it)."""
    from desktop_app.engines.base import run_to_end

    return run_to_end(remove_background(image, model, **kwargs))
