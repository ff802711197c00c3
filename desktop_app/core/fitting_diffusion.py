"""Will a diffusion pipeline fit? Component sizes from the safetensors headers (exact parameter
counts) at fp16/bf16 on a GPU, fp32 on a CPU, plus an activation allowance: ``gpu``,
``gpu_offload``, ``gpu_sequential_offload``, ``cpu`` or ``too_large``. Part of
:mod:`desktop_app.core.fitting`, which re-exports these names."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from desktop_app.core.errors import ModelFormatError
from desktop_app.core.fitting_common import GiB, MiB, RAM_MARGIN, _vram_reserve_bytes
from desktop_app.core.hardware import Hardware, detect_hardware


# --------------------------------------------------------------------------------------------
# Diffusion models
# --------------------------------------------------------------------------------------------
DENOISERS = ("unet", "transformer", "prior", "decoder")
_VARIANT_RE = re.compile(r"\.(fp16|bf16|fp32|non_ema|ema|fp8)\.")
_SHARD_RE = re.compile(r"-\d{5}-of-\d{5}")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def _tensor_params(header: dict) -> Iterator[tuple[str, int]]:
    """(tensor name, element count) for each tensor of a safetensors header."""
    for k, v in header.items():
        if k != "__metadata__":
            yield k, math.prod(int(d) for d in v.get("shape", []))


def _safetensors_params(path: Path) -> int:
    from desktop_app.core.model_files import read_safetensors_header

    return sum(c for _, c in _tensor_params(read_safetensors_header(path)))


def _component_params(folder: Path) -> int:
    """Parameter count of one diffusers component folder (one variant group, all shards)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".gguf", ".ckpt", ".pt")]
    if not files:
        return 0
    groups: dict[str, list[Path]] = {}
    for p in files:
        m = _VARIANT_RE.search(p.name)
        groups.setdefault(m.group(1) if m else "", []).append(p)
    # one variant: prefer safetensors groups, non-variant first
    def rank(item):
        key, ps = item
        return (0 if all(p.suffix == ".safetensors" for p in ps) else 1, 0 if key == "" else 1)

    _, chosen = sorted(groups.items(), key=rank)[0]
    n = 0
    for p in chosen:
        if p.suffix == ".safetensors":
            n += _safetensors_params(p)
        elif p.suffix == ".gguf":
            n += p.stat().st_size // 2  # quantized: keep its own size (counted as 16-bit params)
        else:
            n += p.stat().st_size // 4  # pickle checkpoints are usually fp32; never loaded here
    return n


def diffusion_components(path: str | Path) -> dict[str, int]:
    """{component: parameter count} for a diffusers folder or a single-file checkpoint."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelFormatError(f"No such file or folder: {p}")
    comps: dict[str, int] = {}
    if p.is_dir():
        index = p / "model_index.json"
        if not index.exists():
            raise ModelFormatError(f"{p} is a folder but not a diffusers pipeline (no model_index.json).")
        try:
            names = [k for k, v in json.loads(index.read_text("utf-8")).items()
                     if not k.startswith("_") and isinstance(v, list)]
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"{index} is not valid JSON: {exc}") from exc
        for name in names:
            sub = p / name
            if sub.is_dir():
                n = _component_params(sub)
                if n:
                    comps[name] = n
        if not comps:
            raise ModelFormatError(f"{p}: no weight files found in the pipeline's component folders.")
        return comps
    if p.suffix.lower() == ".safetensors":
        from desktop_app.core.model_files import read_safetensors_header

        for k, c in _tensor_params(read_safetensors_header(p)):
            if k.startswith(("model.diffusion_model.", "double_blocks.", "single_blocks.", "joint_blocks.",
                             "transformer_blocks.", "down_blocks.", "mid_block.", "up_blocks.")):
                comp = "unet" if k.startswith(("model.diffusion_model.input_blocks", "model.diffusion_model.output_blocks",
                                                "model.diffusion_model.middle_block", "down_blocks.", "up_blocks.", "mid_block.")) else "transformer"
            elif k.startswith(("first_stage_model.", "vae.", "decoder.", "encoder.")):
                comp = "vae"
            elif k.startswith(("cond_stage_model.", "conditioner.embedders.0.", "text_encoders.", "text_model.")):
                comp = "text_encoder"
            elif k.startswith("conditioner."):
                comp = "text_encoder_2"
            else:
                comp = "transformer" if comps.get("transformer") else "unet"
            comps[comp] = comps.get(comp, 0) + c
        return comps
    if p.suffix.lower() == ".gguf":
        return {"transformer": p.stat().st_size // 2}
    from desktop_app.core.model_files import refuse_pickle

    refuse_pickle(p)
    return {"unet": p.stat().st_size // 4}


@dataclass
class DiffusionPlan:
    plan: str  # gpu | gpu_offload | gpu_sequential_offload | cpu | too_large
    device: str  # cuda | mps | cpu
    dtype: str  # float16 | bfloat16 | float32
    weights_bytes: int  # all components at dtype
    estimated_bytes: int  # peak on the device (GPU memory, or RAM on CPU)
    ram_bytes: int  # RAM held (offloaded weights, or everything on CPU)
    components: dict[str, int] = field(default_factory=dict)  # component -> bytes at dtype
    vae_tiling: bool = False
    note: str = ""

    @property
    def fits(self) -> bool:
        return self.plan != "too_large"

    @property
    def badge(self) -> str:
        return {
            "gpu": "Full GPU",
            "gpu_offload": "GPU · CPU offload",
            "gpu_sequential_offload": "GPU · sequential offload (slow)",
            "cpu": "CPU · slow",
            "too_large": "Too large",
        }[self.plan]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["badge"] = self.badge
        return d


def _activation_bytes(denoiser_bytes: int) -> int:
    """Working memory at ~1024² (attention, VAE decode): a base plus a share of the denoiser."""
    return 3 * GiB // 4 + denoiser_bytes // 8


def plan_diffusion(path_or_sizes: str | Path | dict, hw: Hardware | None = None,
                   vram_reserve_mib: int | None = None) -> DiffusionPlan:
    """Plan a diffusion pipeline from its files (or a {component: params} dict): the best
    placement that fits (:func:`diffusion_options`' first), else ``too_large``."""
    options = diffusion_options(path_or_sizes, hw, vram_reserve_mib)
    return options[0]


def diffusion_options(path_or_sizes: str | Path | dict, hw: Hardware | None = None,
                      vram_reserve_mib: int | None = None) -> list[DiffusionPlan]:
    """Every placement of a pipeline that fits ``hw``, best first (full GPU, model CPU offload,
    sequential offload, CPU); ``[too_large]`` when none does. The memory broker chooses among
    them when another model shares the machine."""
    hw = hw or detect_hardware()
    params = dict(path_or_sizes) if isinstance(path_or_sizes, dict) else diffusion_components(path_or_sizes)
    reserve = _vram_reserve_bytes(vram_reserve_mib)
    notes: list[str] = []
    out: list[DiffusionPlan] = []
    device = hw.torch_device
    tw = hw.torch_warning()
    if tw:
        notes.append(tw)
    gpus = [g for g in hw.gpus if (g.vendor == "apple") == (device == "mps")] if device != "cpu" else []
    ram_budget = max(0, hw.ram_available_bytes - RAM_MARGIN)
    if gpus:
        g = max(gpus, key=lambda x: x.vram_free_bytes)  # diffusers runs on one device
        dtype = "bfloat16" if (g.vendor == "apple" or g.cc_major >= 8) else "float16"
        comp = {k: v * 2 for k, v in params.items()}
        total = sum(comp.values())
        den = sum(v for k, v in comp.items() if k in DENOISERS) or max(comp.values())
        act = _activation_bytes(den)
        budget = max(0, g.vram_free_bytes - reserve)
        biggest = max(comp.values())
        unified = g.unified_memory
        note = " ".join(notes)
        if total + act <= budget and (not unified or total + act <= ram_budget):
            out.append(DiffusionPlan("gpu", device, dtype, total, total + act, 0, comp, False, note))
        if biggest + act <= budget and total <= ram_budget:
            out.append(DiffusionPlan("gpu_offload", device, dtype, total, biggest + act, total, comp, True,
                                     (note + " Components move to the GPU one at a time (model CPU offload).").strip()))
        seq = act + biggest // 20
        if seq <= budget and total <= ram_budget:
            out.append(DiffusionPlan("gpu_sequential_offload", device, dtype, total, seq, total, comp, True,
                                     (note + " Layers stream to the GPU one by one (sequential offload): very slow.").strip()))
        if not out:
            notes.append(f"Too large for {g.name}'s free memory; trying the CPU.")
    comp = {k: v * 4 for k, v in params.items()}
    total = sum(comp.values())
    den = sum(v for k, v in comp.items() if k in DENOISERS) or max(comp.values())
    need = total + _activation_bytes(den)
    if need <= ram_budget:
        cpu_notes = list(notes)
        if hw.gpus and device == "cpu" and not tw:
            cpu_notes.append("No GPU usable by torch: running on the CPU in float32 (slow).")
        out.append(DiffusionPlan("cpu", "cpu", "float32", total, need, need, comp, False, " ".join(cpu_notes)))
    if out:
        return out
    notes.append(f"Needs about {need / GiB:.1f} GiB in float32 on the CPU but {ram_budget / GiB:.1f} GiB RAM is free.")
    return [DiffusionPlan("too_large", "cpu", "float32", total, need, need, comp, False, " ".join(notes))]


def plan_small_model(size_bytes: int, hw: Hardware | None = None) -> DiffusionPlan:
    """Upscalers and background-removal nets: small, run wherever torch/onnx can."""
    hw = hw or detect_hardware()
    device = hw.torch_device
    dtype = "float32"
    need = int(size_bytes * 2 + 512 * MiB)
    return DiffusionPlan("gpu" if device != "cpu" else "cpu", device, dtype, int(size_bytes), need,
                         int(size_bytes), {"model": int(size_bytes)}, False, "")
