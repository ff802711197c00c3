"""Recognise model files and folders on disk, check their headers, refuse pickle formats."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

from desktop_app.core.errors import ModelFormatError
from desktop_app.core.library import ModelRecord, path_size, slugify

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
GGUF_MAGIC = b"GGUF"


def refuse_pickle(path: Path, allow_pickle: bool = False) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise ModelFormatError(
            f"{path.name} is a pickle checkpoint ({path.suffix}); pickle files can run arbitrary code, "
            "so Atelier refuses them by default. Use a .safetensors or .gguf version of the model, or "
            "turn on 'Allow pickle checkpoints' in Settings if you trust this file."
        )


def check_gguf_header(path: Path) -> int:
    """Validate the GGUF magic and version; returns the version."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise ModelFormatError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    if len(head) < 24 or head[:4] != GGUF_MAGIC:
        raise ModelFormatError(f"{path.name} is not a GGUF file (bad magic); it may be truncated or corrupt.")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in (2, 3):
        raise ModelFormatError(f"{path.name}: unsupported GGUF version {version}.")
    return version


def check_gguf_file(path: Path):
    """Full check of a GGUF before it is registered: header, metadata and tensor table parse, and
    the file holds every byte its tensors need (a truncated download is refused). Returns GGUFInfo."""
    check_gguf_header(path)
    from desktop_app.core.gguf_meta import check_runnable, read_gguf_metadata

    info = read_gguf_metadata(path)
    check_runnable(info)
    return info


# safetensors dtypes and their sizes in bits (the format's own list)
SAFETENSORS_DTYPES = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64,
    "C64": 64,
}
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def read_safetensors_header(path: Path) -> dict:
    """Parse and validate a .safetensors header (JSON) without reading the tensors.

    Every entry is checked as the safetensors library would before use: a known dtype, a shape of
    non-negative integers, ``data_offsets`` ``[begin, end]`` in order, inside the file and exactly
    as long as the shape and dtype need, no two tensors overlapping, no duplicate names.
    """
    name = path.name

    def bad(why: str) -> ModelFormatError:
        return ModelFormatError(f"{name} is not a valid safetensors file: {why}.")

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ModelFormatError(f"{name} is not a safetensors file (too short).")
            (n,) = struct.unpack("<Q", raw)
            if n <= 1 or n > min(size - 8, MAX_SAFETENSORS_HEADER):
                raise ModelFormatError(f"{name} is not a valid safetensors file (bad header length).")
            header = json.loads(f.read(n), object_pairs_hook=_no_duplicates)
    except OSError as exc:
        raise ModelFormatError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    except RecursionError:
        raise bad("its header is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        why = str(exc) if str(exc).startswith("duplicate key") else "the header is not JSON"
        raise bad(why) from None
    if not isinstance(header, dict):
        raise ModelFormatError(f"{name} is not a valid safetensors file.")
    data_len = size - 8 - n
    spans = []
    for tname, info in header.items():
        if tname == "__metadata__":
            if not (isinstance(info, dict) and all(isinstance(v, str) for v in info.values())):
                raise bad("its __metadata__ is not a map of texts")
            continue
        shown = repr(tname[:80])
        if not isinstance(info, dict):
            raise bad(f"the entry {shown} is not an object")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise bad(f"the tensor {shown} has the unknown dtype {str(dtype)[:20]!r}")
        if not (isinstance(shape, list) and len(shape) <= 16 and
                all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**48 for d in shape)):
            raise bad(f"the tensor {shown} has an invalid shape")
        if not (isinstance(offs, list) and len(offs) == 2 and
                all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise bad(f"the tensor {shown} has invalid data_offsets")
        begin, end = offs
        if not 0 <= begin <= end:
            raise bad(f"the tensor {shown} has data_offsets out of order ({begin}, {end})")
        if end > data_len:
            raise ModelFormatError(f"{name} is truncated: the header promises {8 + n + end} bytes, the file has "
                                   f"{size}.")
        numel = 1
        for d in shape:
            numel *= d
        if (numel * SAFETENSORS_DTYPES[dtype] + 7) // 8 != end - begin:
            raise bad(f"the tensor {shown} takes {end - begin} bytes but its shape and dtype need "
                      f"{(numel * SAFETENSORS_DTYPES[dtype] + 7) // 8}")
        spans.append((begin, end, shown))
    spans.sort()
    for (_a0, a1, an), (b0, _b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise bad(f"the tensors {an} and {bn} overlap")
    return header


# Tensor names of LoRA / LyCORIS adapters in the layouts diffusers loads: kohya ("lora_unet_…
# .lora_down.weight", "lora_te1_…"), diffusers/peft ("….lora_A.weight", "….lora.down.weight"),
# LoHa ("hada_w1_a") and LoKr ("lokr_w1").
_LORA_KEY = re.compile(r"(^|[._])(lora[._](up|down|a|b)\b|lora_(unet|te\d?|transformer)_|lora_[ab]\.|hada_w[12]_|lokr_w[12])",
                       re.IGNORECASE)


def check_lora_file(path: Path) -> int:
    """Refuse, with one clear line, a file that is not a LoRA adapter (a whole checkpoint, a VAE, an
    upscaler): only the header is read. Returns how many adapter tensors it has."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ModelFormatError(f"{path.name} is not a LoRA: only .safetensors adapters are used.")
    header = read_safetensors_header(path)
    keys = [k for k in header if k != "__metadata__"]
    n = sum(1 for k in keys if _LORA_KEY.search(k))
    if n == 0:
        what = "an image model checkpoint" if guess_safetensors_task(header) == "image" else "another kind of model"
        raise ModelFormatError(f"{path.name} is not a LoRA adapter (it looks like {what}: none of its "
                               f"{len(keys)} tensors are LoRA weights). Add it as a model instead (Models tab, or atelier models import).")
    return n


def guess_safetensors_task(header: dict) -> str:
    """Tell a diffusion checkpoint from an upscaler/segmentation net by its tensor names."""
    keys = [k for k in header if k != "__metadata__"]
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.", "double_blocks.", "joint_blocks.",
                         "transformer_blocks.", "down_blocks.", "single_transformer_blocks.")) for k in keys):
        return "image"
    return "upscale"


def record_for_path(path: Path, allow_pickle: bool = False) -> ModelRecord:
    """A (not yet registered) record describing a local model file or folder."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise ModelFormatError(f"No such file or folder: {path}")
    if path.is_dir():
        if (path / "model_index.json").exists():
            fmt, task = "diffusers", "image"
        else:
            raise ModelFormatError(
                f"{path} is a folder but not a diffusers pipeline (no model_index.json)."
            )
    else:
        refuse_pickle(path, allow_pickle)
        suffix = path.suffix.lower()
        if suffix == ".gguf":
            gguf_info = check_gguf_file(path)
            fmt, task = "gguf", "chat"
        elif suffix == ".safetensors":
            header = read_safetensors_header(path)
            fmt, task = "safetensors", guess_safetensors_task(header)
        elif suffix == ".onnx":
            fmt, task = "onnx", "background_removal"
        else:
            # GGUF files sometimes lack the suffix (Ollama blobs): sniff the magic.
            try:
                check_gguf_header(path)
            except ModelFormatError:
                raise ModelFormatError(
                    f"{path.name}: unknown model format. Atelier reads .gguf, .safetensors, .onnx and diffusers folders."
                ) from None
            gguf_info = check_gguf_file(path)
            fmt, task = "gguf", "chat"
    quant = family = ""
    if fmt == "gguf":
        quant = getattr(gguf_info, "quantization", "") or ""
        family = getattr(gguf_info, "architecture", "") or ""
    return ModelRecord(
        id=slugify(path.name),
        task=task,
        format=fmt,
        path=str(path),
        size_bytes=path_size(path),
        name=path.stem if path.is_file() else path.name,
        source="import",
        managed=False,
        quantization=quant,
        family=family,
    )


def check_diffusers_folder(path: Path, allow_pickle: bool = False) -> dict:
    """Validate a diffusers pipeline folder before it is registered; returns its model_index.json.

    Every component named in model_index.json must have a folder; weights must be safetensors
    (headers checked) unless ``allow_pickle``; a component with only pickle weights is refused.
    """
    path = Path(path)
    try:
        index = json.loads((path / "model_index.json").read_text("utf-8"))
    except OSError as exc:
        raise ModelFormatError(f"{path} is not a diffusers pipeline (no readable model_index.json): {exc}") from exc
    except ValueError as exc:
        raise ModelFormatError(f"{path}/model_index.json is not valid JSON.") from exc
    if not isinstance(index, dict):
        raise ModelFormatError(f"{path}/model_index.json is not a JSON object.")
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or not spec or spec[0] is None:
            continue
        comp = path / name
        if not comp.is_dir():
            raise ModelFormatError(f"{path.name}: the component '{name}' listed in model_index.json is missing.")
        safes = sorted(comp.glob("*.safetensors"))
        pickles = [p for p in comp.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        for s in safes:
            read_safetensors_header(s)
        if pickles and not safes and not allow_pickle:
            refuse_pickle(pickles[0], allow_pickle)
    return index


def file_sha256(path: Path, cancel=None, chunk: int = 4 * 1024 * 1024) -> str:
    """A file's sha256, read in chunks; ``cancel`` (a CancelToken) is checked between them."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            if cancel is not None:
                cancel.raise_if_cancelled()
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)
