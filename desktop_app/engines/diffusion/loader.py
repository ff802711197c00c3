"""Load SD 1.5 / SDXL pipelines from local diffusers folders or single .safetensors files.

Runs in the engine child (imports diffusers lazily). Never reaches the hub: every call passes
``local_files_only=True`` and the child runs with ``HF_HUB_OFFLINE=1``.

Single-file checkpoints need their family's config folder (a diffusers folder without weights:
``model_index.json`` + component configs + tokenizer files). Looked up, in order:
  1. ``ModelSpec.config`` (explicit),
  2. ``resources/diffusion_configs/<family>/`` (bundled with the app, when we can ship it),
  3. ``<models dir>/configs/<family>/`` (fetched once by the model manager on request).
With none, ``ModelFormatError`` names the family and those folders.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from desktop_app.core.errors import ModelFormatError

FAMILIES = {
    "sd15": "Stable Diffusion 1.x",
    "sd15-inpainting": "Stable Diffusion 1.x inpainting",
    "sd2": "Stable Diffusion 2.x",
    "sdxl": "Stable Diffusion XL",
    "sdxl-inpainting": "Stable Diffusion XL inpainting",
}
# Hub repos whose config folder the manager may fetch for a family (named in the error message).
CONFIG_REPOS = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd15-inpainting": "stable-diffusion-v1-5/stable-diffusion-inpainting",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-inpainting": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
}
RESOURCES_CONFIGS = Path(__file__).resolve().parents[3] / "resources" / "diffusion_configs"


@dataclass
class LoadedModel:
    pipe: object
    family: str
    pipeline: str          # pipeline class name
    native_size: int       # the resolution the model was trained for (e.g. 512, 1024)
    max_size: int
    source: str            # "folder" or "single_file"


def detect_family(header: dict) -> str:
    """Family of an original-layout (A1111/ComfyUI) checkpoint from its tensor names/shapes."""
    keys = [k for k in header if k != "__metadata__"]
    if any(k.startswith(("double_blocks.", "single_blocks.", "joint_blocks.", "transformer_blocks.")) for k in keys):
        raise ModelFormatError(
            "This checkpoint is a FLUX/SD3-style transformer model; Atelier's image studio loads "
            "SD 1.5 and SDXL checkpoints (other families come with a later update)."
        )
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        if any(k.startswith(("down_blocks.", "lora_", "lora_unet_")) or ".lora_" in k for k in keys):
            raise ModelFormatError(
                "This .safetensors file is not a full checkpoint (it looks like a UNet-only or LoRA file). "
                "Load a full SD 1.5/SDXL checkpoint, and add LoRAs in the LoRA list."
            )
        raise ModelFormatError("This .safetensors file is not a Stable Diffusion checkpoint (no UNet weights found).")
    conv_in = header.get("model.diffusion_model.input_blocks.0.0.weight", {})
    shape = conv_in.get("shape") if isinstance(conv_in, dict) else None
    inpaint = bool(shape and len(shape) == 4 and shape[1] == 9)
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl-inpainting" if inpaint else "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15-inpainting" if inpaint else "sd15"
    raise ModelFormatError(
        "Cannot tell which Stable Diffusion family this checkpoint is (no text-encoder weights found)."
    )


def config_candidates(family: str, explicit: str | None = None) -> list[Path]:
    from desktop_app.core.paths import get_paths

    cands = []
    if explicit:
        cands.append(Path(explicit).expanduser())
    cands.append(RESOURCES_CONFIGS / family)
    cands.append(get_paths().models / "configs" / family)
    return cands


def find_config_dir(family: str, explicit: str | None = None) -> Path:
    cands = config_candidates(family, explicit)
    if explicit and not (cands[0] / "model_index.json").is_file():
        raise ModelFormatError(f"The config folder {cands[0]} is not a diffusers config folder (no model_index.json).")
    for c in cands:
        if (c / "model_index.json").is_file():
            return c
    raise ModelFormatError(
        f"This single-file checkpoint is {FAMILIES.get(family, family)}, and its config folder is not on this "
        f"computer (looked in: {', '.join(str(c) for c in cands[1:])}). Atelier never fetches it silently: "
        f"download it once from the Models tab (the config files of {CONFIG_REPOS.get(family, family)}, no weights), "
        "or load a diffusers folder of this model instead."
    )


def _dtype(torch, dtype):
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        return {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}[dtype.lower()]
    return dtype


def _family_of_pipe(pipe) -> str:
    name = type(pipe).__name__
    base = "sdxl" if "XL" in name else "sd15"
    if "Inpaint" in name and getattr(pipe.unet.config, "in_channels", 4) == 9:
        return base + "-inpainting"
    return base


def inspect(spec) -> tuple[str, str | None, Path | None]:
    """Cheap checks before anything heavy: ("folder" | "single_file", family or None, config dir or None).

    Raises ModelFormatError with a clear message for a missing, pickle, corrupt, truncated or
    unsupported file, or a single file whose config folder is not on this computer.
    """
    from desktop_app.core.model_files import read_safetensors_header, refuse_pickle

    path = Path(spec.path).expanduser()
    if not path.exists():
        raise ModelFormatError(f"Model not found: {path}")
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            raise ModelFormatError(f"{path} is a folder but not a diffusers pipeline (no model_index.json).")
        try:
            cls_name = json.loads(index.read_text("utf-8")).get("_class_name", "")
        except ValueError as exc:
            raise ModelFormatError(f"{index} is not valid JSON: {exc}") from exc
        if cls_name not in (
            "StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusionInpaintPipeline",
            "StableDiffusionXLInpaintPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionXLImg2ImgPipeline",
        ):
            raise ModelFormatError(
                f"{path.name} is a {cls_name or 'unknown'} model; the image studio loads SD 1.5 and SDXL pipelines."
            )
        for pick in path.rglob("*.bin"):
            if not pick.with_suffix(".safetensors").exists():
                refuse_pickle(pick, spec.allow_pickle)
        return "folder", None, None
    refuse_pickle(path, spec.allow_pickle)
    if path.suffix.lower() != ".safetensors":
        raise ModelFormatError(f"{path.name}: unsupported model file; use a .safetensors checkpoint or a diffusers folder.")
    header = read_safetensors_header(path)
    family = spec.family or detect_family(header)
    if family == "sd2":
        raise ModelFormatError("Stable Diffusion 2.x checkpoints are not supported yet; use SD 1.5 or SDXL.")
    if family not in FAMILIES:
        raise ModelFormatError(f"Unknown model family {family!r}; use one of {', '.join(FAMILIES)}.")
    return "single_file", family, find_config_dir(family, spec.config)


def load_pipeline(spec, dtype=None) -> LoadedModel:
    """Build the pipeline on the CPU in ``dtype`` (placement on a device is the caller's job)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kind, family, config = inspect(spec)
    path = Path(spec.path).expanduser()
    import torch

    td = _dtype(torch, dtype)
    if kind == "folder":
        index = path / "model_index.json"
        from diffusers import DiffusionPipeline

        kwargs = {}
        if "safety_checker" in index.read_text("utf-8"):
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = DiffusionPipeline.from_pretrained(
                str(path), dtype=td, local_files_only=True, use_safetensors=not spec.allow_pickle or None, **kwargs
            )
        except (OSError, ValueError, KeyError, RuntimeError, EnvironmentError) as exc:
            raise ModelFormatError(f"Cannot load the diffusers folder {path.name}: {str(exc).splitlines()[0]}") from exc
        source = "folder"
        family = _family_of_pipe(pipe)
    else:
        import diffusers
        cls = {
            "sd15": diffusers.StableDiffusionPipeline,
            "sd15-inpainting": diffusers.StableDiffusionInpaintPipeline,
            "sdxl": diffusers.StableDiffusionXLPipeline,
            "sdxl-inpainting": diffusers.StableDiffusionXLInpaintPipeline,
        }[family]
        kwargs = {}
        if family.startswith("sd15") and "safety_checker" in (config / "model_index.json").read_text("utf-8"):
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = cls.from_single_file(str(path), config=str(config), local_files_only=True, dtype=td, **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError, EnvironmentError) as exc:
            raise ModelFormatError(
                f"Cannot load {path.name} as {FAMILIES[family]} with the config folder {config}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc
        source = "single_file"
    native = int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))
    return LoadedModel(
        pipe=pipe,
        family=family,
        pipeline=type(pipe).__name__,
        native_size=native,
        max_size=min(4096, native * 4),
        source=source,
    )
