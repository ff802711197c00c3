"""Load SD 1.5 / SDXL / SD 3.x / FLUX.1 pipelines from local diffusers folders or single files.

SD 3.x and FLUX.1 (flow-matching transformers): diffusers folders (family from model_index.json's
``_class_name``); their transformer may also come from a separate file (``ModelSpec.transformer_gguf``:
a GGUF file loaded with diffusers' GGUFQuantizationConfig, or a transformer-only ``.safetensors``)
with every other component from the folder ``ModelSpec.path``. A single file of these families
needs its config folder locally (the folder's configs/tokenizers; see below).

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
from desktop_app.core.families import FAMILIES, FLOW_FAMILIES  # noqa: F401 - their home is core/

# (steps, guidance) when the request leaves them to the model
DEFAULTS = {"sd3": (28, 4.5), "flux-schnell": (4, 0.0), "flux-dev": (28, 3.5)}
SD_DEFAULTS = (20, 7.0)
PIPELINE_CLASSES = {
    "StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sd", "StableDiffusionInpaintPipeline": "sd",
    "StableDiffusionXLInpaintPipeline": "sd", "StableDiffusionImg2ImgPipeline": "sd",
    "StableDiffusionXLImg2ImgPipeline": "sd",
    "StableDiffusion3Pipeline": "sd3", "StableDiffusion3Img2ImgPipeline": "sd3", "StableDiffusion3InpaintPipeline": "sd3",
    "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux", "FluxInpaintPipeline": "flux",
}
# Hub repos whose config folder the manager may fetch for a family (named in the error message).
CONFIG_REPOS = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd15-inpainting": "stable-diffusion-v1-5/stable-diffusion-inpainting",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-inpainting": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    "sd3": "stabilityai/stable-diffusion-3.5-medium",
    "flux-schnell": "black-forest-labs/FLUX.1-schnell",
    "flux-dev": "black-forest-labs/FLUX.1-dev",
}
RESOURCES_CONFIGS = Path(__file__).resolve().parents[3] / "resources" / "diffusion_configs"


@dataclass
class LoadedModel:
    pipe: object
    family: str
    pipeline: str          # pipeline class name
    native_size: int       # the resolution the model was trained for (e.g. 512, 1024)
    max_size: int
    source: str            # "folder", "single_file", "folder+gguf" or "folder+transformer_file"
    size_multiple: int = 8  # width/height must be multiples of this
    default_steps: int = 20
    default_guidance: float = 7.0
    schedulers: tuple = ()  # the scheduler names (protocol.SCHEDULERS / FLOW_SCHEDULERS) that apply
    modes: tuple = ("txt2img", "img2img", "inpaint")

    @property
    def flow(self) -> bool:
        return self.family in FLOW_FAMILIES


def detect_family(header: dict) -> str:
    """Family of an original-layout (A1111/ComfyUI) checkpoint from its tensor names/shapes."""
    keys = [k for k in header if k != "__metadata__"]
    flow = detect_flow_family(keys)
    if flow:
        return flow
    if any(k.startswith(("transformer_blocks.", "single_transformer_blocks.")) for k in keys):
        raise ModelFormatError(
            "This file holds a transformer in diffusers' layout (not a full checkpoint): load it as the "
            "transformer file of a SD 3/FLUX diffusers folder."
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
        "Cannot tell which Stable Diffusion family this checkpoint is (it has UNet weights but no text-encoder "
        "weights). Choose its family (SD 1.5 or SDXL) when loading it, with a config folder that holds the text "
        "encoder (a diffusers folder of the same model), or load a complete checkpoint."
    )


def detect_flow_family(keys) -> str | None:
    """'flux-dev' / 'flux-schnell' / 'sd3' for original-layout (BFL / Stability) keys, else None."""
    keys = list(keys)
    strip = [k[len("model.diffusion_model."):] if k.startswith("model.diffusion_model.") else k for k in keys]
    if any(k.startswith(("double_blocks.", "single_blocks.")) for k in strip):
        return "flux-dev" if any(k.startswith("guidance_in.") for k in strip) else "flux-schnell"
    if any(k.startswith("joint_blocks.") for k in strip):
        return "sd3"
    return None


def transformer_only(keys) -> bool:
    """True when an original-layout SD3/FLUX file has no VAE / text-encoder weights."""
    return not any(k.startswith(("first_stage_model.", "vae.", "text_encoders.", "cond_stage_model.", "conditioner."))
                   for k in keys)


def config_candidates(family: str, explicit: str | None = None) -> list[Path]:
    from desktop_app.core.paths import get_paths

    cands = []
    if explicit:
        cands.append(Path(explicit).expanduser())
    # A folder the user fetched from the model's own repository wins over the bundled generic one.
    cands.append(get_paths().models / "configs" / family)
    cands.append(RESOURCES_CONFIGS / family)
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
        f"computer (looked in: {', '.join(str(c) for c in cands)}). Atelier never fetches it silently: "
        f"download it once (the config files of {CONFIG_REPOS.get(family, family)}, no weights) with "
        f"`atelier models configs --family {family}`, or load a diffusers folder of this model instead."
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
    if name.startswith("StableDiffusion3"):
        return "sd3"
    if name.startswith("Flux"):
        return "flux-dev" if getattr(pipe.transformer.config, "guidance_embeds", False) else "flux-schnell"
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
        kind = PIPELINE_CLASSES.get(cls_name)
        if kind is None:
            raise ModelFormatError(
                f"{path.name} is a {cls_name or 'unknown'} model; the image studio loads SD 1.5, SDXL, "
                "SD 3/3.5 and FLUX.1 pipelines."
            )
        tfile = getattr(spec, "transformer_gguf", None)
        for pick in path.rglob("*.bin"):
            if tfile and pick.parent.name == "transformer":
                continue
            if not pick.with_suffix(".safetensors").exists():
                refuse_pickle(pick, spec.allow_pickle)
        if tfile:
            if kind == "sd":
                raise ModelFormatError(
                    "A separate transformer file (GGUF) applies to SD 3/3.5 and FLUX.1 folders only; "
                    f"{path.name} is a {cls_name}."
                )
            check_transformer_file(Path(tfile).expanduser(), spec.allow_pickle)
            if not (path / "transformer" / "config.json").is_file():
                raise ModelFormatError(
                    f"{path.name} has no transformer/config.json: the transformer file needs the folder's "
                    "transformer config (the rest of the pipeline comes from the folder)."
                )
            return "folder+transformer", None, None
        return "folder", None, None
    refuse_pickle(path, spec.allow_pickle)
    if path.suffix.lower() != ".safetensors":
        raise ModelFormatError(f"{path.name}: unsupported model file; use a .safetensors checkpoint or a diffusers folder.")
    header = read_safetensors_header(path)
    family = spec.family or detect_family(header)
    if family in ("flux", "flux1"):
        family = detect_flow_family(header) or "flux-schnell"
    if family in FLOW_FAMILIES:
        only = transformer_only(k for k in header if k != "__metadata__")
        if only and not spec.config:
            raise ModelFormatError(
                f"{path.name} holds only a {FAMILIES[family]} transformer. Load a {FAMILIES[family]} diffusers "
                "folder (VAE, text encoders, configs) and choose this file as its transformer file, or give that "
                "folder as the config folder."
            )
        cfg = find_config_dir(family, spec.config)
        return ("transformer_file" if only else "single_file"), family, cfg
    if family == "sd2":
        raise ModelFormatError("Stable Diffusion 2.x checkpoints are not supported yet; use SD 1.5 or SDXL.")
    if family not in FAMILIES:
        raise ModelFormatError(f"Unknown model family {family!r}; use one of {', '.join(FAMILIES)}.")
    return "single_file", family, find_config_dir(family, spec.config)


def check_transformer_file(tpath: Path, allow_pickle: bool = False) -> str:
    """'gguf' or 'safetensors' for a separate transformer file; clear errors otherwise."""
    from desktop_app.core.model_files import check_gguf_header, read_safetensors_header, refuse_pickle

    if not tpath.is_file():
        raise ModelFormatError(f"Transformer file not found: {tpath}")
    suffix = tpath.suffix.lower()
    if suffix == ".gguf":
        check_gguf_header(tpath)
        return "gguf"
    if suffix == ".safetensors":
        read_safetensors_header(tpath)
        return "safetensors"
    refuse_pickle(tpath, allow_pickle)
    raise ModelFormatError(f"{tpath.name}: a transformer file must be .gguf or .safetensors.")


def _load_transformer(folder: Path, tpath: Path, cls_name: str, td, kind: str):
    """The transformer from a GGUF / single .safetensors file, configured from ``folder/transformer``."""
    import diffusers

    cls = diffusers.FluxTransformer2DModel if cls_name.startswith("Flux") else diffusers.SD3Transformer2DModel
    kwargs = dict(config=str(folder), subfolder="transformer", local_files_only=True, dtype=td)
    if kind == "gguf":
        kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=td)
    try:
        return cls.from_single_file(str(tpath), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, EnvironmentError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFormatError(
            f"Cannot load {tpath.name} as the {cls.__name__} of {folder.name}: {msg}. Check that the file is a "
            f"transformer of the same model as the folder."
        ) from exc


def _describe(pipe, family: str, source: str) -> LoadedModel:
    from desktop_app.engines.diffusion.protocol import FLOW_SCHEDULERS, SCHEDULERS

    vsf = int(getattr(pipe, "vae_scale_factor", 8))
    if family in FLOW_FAMILIES:
        native = int(getattr(pipe, "default_sample_size", 128)) * vsf
        patch = int(getattr(pipe.transformer.config, "patch_size", 1) or 1)
        multiple = max(16, vsf * 2, vsf * patch)
        steps, guidance = DEFAULTS[family]
        return LoadedModel(pipe=pipe, family=family, pipeline=type(pipe).__name__, native_size=native,
                           max_size=min(4096, native * 2), source=source, size_multiple=multiple,
                           default_steps=steps, default_guidance=guidance, schedulers=tuple(FLOW_SCHEDULERS))
    native = int(pipe.unet.config.sample_size) * vsf
    modes = ("inpaint",) if family.endswith("inpainting") else ("txt2img", "img2img", "inpaint")
    return LoadedModel(pipe=pipe, family=family, pipeline=type(pipe).__name__, native_size=native,
                       max_size=min(4096, native * 4), source=source, default_steps=SD_DEFAULTS[0],
                       default_guidance=SD_DEFAULTS[1], schedulers=tuple(SCHEDULERS), modes=modes)


def _weights_in(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.safetensors"))


def _missing_components(exc, config: Path) -> list[tuple[str, str, str]]:
    """(name, library, class) of the config folder's components diffusers found missing in a checkpoint."""
    import re

    m = re.search(r"Failed to load (\w+)", str(exc))
    if not m:
        return []
    try:
        index = json.loads((config / "model_index.json").read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return [(name, v[0], v[1]) for name, v in index.items()
            if isinstance(v, list) and len(v) == 2 and v[1] == m.group(1)]


def _from_single_file(cls, path: Path, config: Path, td, family: str, kwargs: dict):
    """``cls.from_single_file`` from a local config folder.

    A checkpoint may lack components: Stability's SD 3.5 files hold no text encoders (CLIP-L/G and
    T5 ship apart), and pruned SD 1.5/SDXL files sometimes drop theirs. diffusers takes a missing
    diffusers model (UNet/VAE) from the config folder when the folder has its weights, but not a
    transformers one (it looks for ``diffusion_pytorch_model.*`` only) and raises
    SingleFileComponentError. Here a missing component whose weights are in the config folder (a
    full diffusers folder of the same model) is loaded from there; with no weights for it anywhere,
    a ModelFormatError says which component is missing and what to do.
    """
    import importlib

    given: dict = {}
    while True:
        try:
            return cls.from_single_file(str(path), config=str(config), local_files_only=True, dtype=td,
                                        **kwargs, **given)
        except Exception as exc:  # diffusers' SingleFileComponentError is a bare Exception subclass
            if type(exc).__name__ != "SingleFileComponentError":
                raise
            missing = [c for c in _missing_components(exc, config) if c[0] not in given]
            usable = [c for c in missing if _weights_in(config / c[0])]
            if not usable:
                names = ", ".join(f"{n} ({c})" for n, _lib, c in missing) or str(exc).splitlines()[0]
                raise ModelFormatError(
                    f"{path.name} is not a complete {FAMILIES.get(family, family)} checkpoint: it has no weights for "
                    f"the {names}, and the config folder {config} has none either. Load a complete checkpoint, or "
                    "give as its config folder a diffusers folder of the same model that holds those weights "
                    "(or load that diffusers folder itself)."
                ) from exc
            for name, lib, cname in usable:
                try:
                    comp_cls = getattr(importlib.import_module(lib), cname)
                    given[name] = comp_cls.from_pretrained(str(config), subfolder=name, local_files_only=True,
                                                           dtype=td)
                except (OSError, ValueError, KeyError, RuntimeError, AttributeError, ImportError) as err:
                    first = str(err).splitlines()[0] if str(err) else type(err).__name__
                    raise ModelFormatError(
                        f"{path.name} has no {name} weights and loading them from the config folder {config} "
                        f"failed: {first}"
                    ) from err


def load_pipeline(spec, dtype=None) -> LoadedModel:
    """Build the pipeline on the CPU in ``dtype`` (placement on a device is the caller's job)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kind, family, config = inspect(spec)
    path = Path(spec.path).expanduser()
    import torch

    td = _dtype(torch, dtype)
    if kind in ("folder+transformer", "transformer_file"):
        from diffusers import DiffusionPipeline

        if kind == "folder+transformer":
            folder, tpath = path, Path(spec.transformer_gguf).expanduser()
        else:
            folder, tpath = config, path
        cls_name = json.loads((folder / "model_index.json").read_text("utf-8")).get("_class_name", "")
        if PIPELINE_CLASSES.get(cls_name) not in ("sd3", "flux"):
            raise ModelFormatError(f"{folder.name} is a {cls_name or 'unknown'} folder, not an SD 3/FLUX one.")
        tkind = check_transformer_file(tpath, spec.allow_pickle)
        transformer = _load_transformer(folder, tpath, cls_name, td, tkind)
        try:
            pipe = DiffusionPipeline.from_pretrained(str(folder), transformer=transformer, dtype=td,
                                                     local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError, EnvironmentError) as exc:
            raise ModelFormatError(
                f"Cannot load the rest of the pipeline from {folder.name}: {str(exc).splitlines()[0]}") from exc
        return _describe(pipe, _family_of_pipe(pipe), "folder+gguf" if tkind == "gguf" else "folder+transformer_file")
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
            "sd3": diffusers.StableDiffusion3Pipeline,
            "flux-schnell": diffusers.FluxPipeline,
            "flux-dev": diffusers.FluxPipeline,
        }[family]
        kwargs = {}
        if family.startswith("sd15") and "safety_checker" in (config / "model_index.json").read_text("utf-8"):
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = _from_single_file(cls, path, config, td, family, kwargs)
        except ModelFormatError:
            raise
        except Exception as exc:  # anything diffusers raises on a bad file, said clearly
            if type(exc).__name__ == "OutOfMemoryError":
                raise
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "shape" in str(exc) and ("mismatch" in str(exc) or "expected" in str(exc)):
                raise ModelFormatError(
                    f"{path.name} does not match the standard {FAMILIES[family]} architecture of the config "
                    f"folder {config} (tensor shapes differ). A model with another architecture needs its own "
                    "config folder: load its diffusers folder instead, or give its config folder explicitly."
                ) from exc
            raise ModelFormatError(
                f"Cannot load {path.name} as {FAMILIES[family]} with the config folder {config}: {first}"
            ) from exc
        source = "single_file"
    return _describe(pipe, family, source)
