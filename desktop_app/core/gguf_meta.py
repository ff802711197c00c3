"""Fast GGUF metadata reader: parses the header directly and skips large arrays.

``gguf.GGUFReader`` materialises every array element (13 s for a 150k-token vocabulary); this
reader walks the key/value section and the tensor-info table with ``struct`` over an mmap, keeps
scalars, strings and small arrays, and records only the length of large arrays (token lists,
merges, scores). Every length is checked against the file size, so a malformed or truncated file
raises :class:`ModelFormatError` instead of hanging or exhausting memory.

Format (v2/v3, little endian): ``GGUF`` u32 version, u64 n_tensors, u64 n_kv; n_kv × (string key,
u32 type, value); n_tensors × (string name, u32 n_dims, u64 dims[n_dims], u32 type, u64 offset);
padding to ``general.alignment`` (32); tensor data.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_app.core.errors import ModelFormatError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# Arrays with at most this many elements are kept in ``metadata``; longer ones are skipped and
# only their length is recorded (``array_lengths``).
SMALL_ARRAY = 1024
MAX_KEY_LEN = 1 << 16
MAX_DIMS = 8
LLAMA_MAX_LAYERS = 512  # llama.cpp's own limit (src/llama-hparams.h); more aborts it
MAX_CONTEXT = 1 << 24  # 16M tokens: beyond any real model, and it bounds KV-cache arithmetic

# value type -> (struct format, size); 8 = string, 9 = array
_SCALARS = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")

# ggml type id -> (name, block size, bytes per block). Mirrors gguf.GGML_QUANT_SIZES (a unit test
# checks they agree); unknown ids fall back to the gguf package's table, imported lazily (it costs
# ~250 ms of imports that a metadata read should not pay).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}

# general.file_type (llama_ftype) -> label
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}

_LAYER_RE = re.compile(r"^blk\.(\d+)\.")


def ggml_type_info(type_id: int) -> tuple[str, int, int]:
    """(name, block size, type size) for a ggml tensor type id."""
    hit = GGML_TYPES.get(type_id)
    if hit:
        return hit
    try:
        import gguf

        qt = gguf.GGMLQuantizationType(type_id)
        block, size = gguf.GGML_QUANT_SIZES[qt]
        return qt.name, block, size
    except Exception:  # noqa: BLE001 - unknown to us and to gguf
        raise ModelFormatError(
            f"Unknown GGUF tensor type {type_id}: the file is corrupt or needs a newer Atelier."
        ) from None


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order (ne0 first)
    type_id: int
    type_name: str
    offset: int  # relative to the start of the data section
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFInfo:
    path: str
    version: int
    file_size: int
    metadata: dict[str, Any]
    array_lengths: dict[str, int]  # every array key -> its length (also the skipped ones)
    tensors: list[TensorInfo]
    data_offset: int
    architecture: str = ""
    name: str = ""
    file_type: int | None = None
    quantization: str = ""
    n_layers: int = 0
    context_length: int = 0
    n_embd: int = 0
    n_head: int = 0
    n_head_kv: int = 0
    n_head_kv_per_layer: list[int] | None = None
    head_dim_k: int = 0
    head_dim_v: int = 0
    n_vocab: int = 0
    n_ff: int = 0
    chat_template: str = ""
    expert_count: int = 0
    expert_used_count: int = 0
    sliding_window: int = 0
    total_tensor_bytes: int = 0
    layer_bytes: list[int] = field(default_factory=list)
    non_layer_bytes: int = 0
    token_embd_bytes: int = 0
    output_bytes: int = 0  # output.weight (+ output_norm); token_embd's size when the output is tied

    @property
    def tied_output(self) -> bool:
        return not any(t.name == "output.weight" for t in self.tensors)

    def arch_key(self, suffix: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    def to_dict(self) -> dict:
        """Summary (no tensor list, no template body) for JSON output."""
        return {
            "path": self.path,
            "version": self.version,
            "architecture": self.architecture,
            "name": self.name,
            "quantization": self.quantization,
            "file_type": self.file_type,
            "n_layers": self.n_layers,
            "context_length": self.context_length,
            "n_embd": self.n_embd,
            "n_head": self.n_head,
            "n_head_kv": self.n_head_kv,
            "head_dim_k": self.head_dim_k,
            "head_dim_v": self.head_dim_v,
            "n_vocab": self.n_vocab,
            "n_ff": self.n_ff,
            "expert_count": self.expert_count,
            "expert_used_count": self.expert_used_count,
            "sliding_window": self.sliding_window,
            "has_chat_template": bool(self.chat_template),
            "n_tensors": len(self.tensors),
            "total_tensor_bytes": self.total_tensor_bytes,
            "non_layer_bytes": self.non_layer_bytes,
        }


class _Cursor:
    """Bounds-checked little-endian reader over a buffer (mmap or bytes)."""

    __slots__ = ("buf", "pos", "end", "name")

    def __init__(self, buf, name: str) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.name = name

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise ModelFormatError(
                f"{self.name} is truncated or corrupt: {what} at byte {self.pos} needs {n} bytes "
                f"but the file ends at {self.end}. Download the file again."
            )

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = struct.unpack_from("<I", self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = struct.unpack_from("<Q", self.buf, self.pos)
        self.pos += 8
        return v

    def string(self, what: str, keep: bool = True, limit: int | None = None) -> str | None:
        n = self.u64(what)
        if limit is not None and n > limit:
            raise ModelFormatError(f"{self.name} is corrupt: {what} claims {n} bytes.")
        self.need(n, what)
        start = self.pos
        self.pos += n
        if not keep:
            return None
        return bytes(self.buf[start:start + n]).decode("utf-8", errors="replace")

    def skip_strings(self, count: int, what: str) -> None:
        """Walk ``count`` length-prefixed strings without decoding them (the hot loop)."""
        buf, unpack = self.buf, _U64.unpack_from
        pos, end = self.pos, self.end - 8
        for _ in range(count):
            if pos > end:
                break
            pos += 8 + unpack(buf, pos)[0]
        else:
            if pos <= self.end:
                self.pos = pos
                return
        self.pos = min(pos, self.end)
        self.need(8, what)  # raises: the strings run past the end of the file

    def scalar(self, vtype: int, what: str):
        fmt, size = _SCALARS[vtype]
        self.need(size, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return v


def _read_value(cur: _Cursor, vtype: int, key: str, lengths: dict[str, int]):
    if vtype in _SCALARS:
        return cur.scalar(vtype, f"value of {key}")
    if vtype == _STRING:
        return cur.string(f"string value of {key}")
    if vtype != _ARRAY:
        raise ModelFormatError(f"{cur.name} is corrupt: key {key!r} has unknown value type {vtype}.")
    etype = cur.u32(f"array type of {key}")
    count = cur.u64(f"array length of {key}")
    lengths[key] = count
    remaining = cur.end - cur.pos
    if etype in _SCALARS:
        size = _SCALARS[etype][1]
        if count * size > remaining:
            cur.need(count * size, f"array {key}")
        if count <= SMALL_ARRAY:
            fmt = "<" + _SCALARS[etype][0][1] * count
            vals = list(struct.unpack_from(fmt, cur.buf, cur.pos))
            cur.pos += count * size
            return vals
        cur.pos += count * size
        return None
    if etype == _STRING:
        if count * 8 > remaining:
            cur.need(count * 8, f"array {key}")
        if count <= 64:
            return [cur.string(f"element of {key}") for _ in range(count)]
        cur.skip_strings(count, f"array {key}")
        return None
    if etype == _ARRAY:
        # nested arrays are rare (never in llama.cpp's own keys): walk them, keep nothing
        if count * 12 > remaining:
            cur.need(count * 12, f"array {key}")
        for _ in range(count):
            _read_value(cur, _ARRAY, key + "[]", {})
        return None
    raise ModelFormatError(f"{cur.name} is corrupt: array {key!r} has unknown element type {etype}.")


def _parse(buf, path: Path, file_size: int) -> GGUFInfo:
    name = path.name
    cur = _Cursor(buf, name)
    if file_size < 24 or bytes(buf[:4]) != GGUF_MAGIC:
        raise ModelFormatError(f"{name} is not a GGUF file (bad magic); it may be truncated or corrupt.")
    cur.pos = 4
    version = cur.u32("version")
    if version not in (2, 3):
        raise ModelFormatError(f"{name}: unsupported GGUF version {version} (Atelier reads versions 2 and 3).")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("key/value count")
    # each key/value needs at least 8 (key length) + 1 (key) + 4 (type) + 1 bytes; each tensor info 8+1+4+8+4+8
    if n_kv * 14 > file_size or n_tensors * 33 > file_size:
        raise ModelFormatError(
            f"{name} is corrupt: it claims {n_kv} metadata keys and {n_tensors} tensors, "
            f"more than a {file_size}-byte file can hold."
        )
    meta: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(n_kv):
        key = cur.string("metadata key", limit=MAX_KEY_LEN)
        vtype = cur.u32(f"type of {key}")
        meta[key] = _read_value(cur, vtype, key, lengths)

    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        tname = cur.string("tensor name", limit=MAX_KEY_LEN)
        n_dims = cur.u32(f"dimensions of {tname}")
        if n_dims > MAX_DIMS:
            raise ModelFormatError(f"{name} is corrupt: tensor {tname!r} has {n_dims} dimensions.")
        cur.need(8 * n_dims, f"shape of {tname}")
        shape = struct.unpack_from("<" + "Q" * n_dims, buf, cur.pos)
        cur.pos += 8 * n_dims
        type_id = cur.u32(f"type of {tname}")
        offset = cur.u64(f"offset of {tname}")
        tname_t, block, tsize = ggml_type_info(type_id)
        n_el = 1
        for d in shape:
            n_el *= d
        if n_el and shape[0] % block:
            raise ModelFormatError(f"{name} is corrupt: tensor {tname!r} row size {shape[0]} is not a multiple of {block}.")
        tensors.append(TensorInfo(tname, tuple(shape), type_id, tname_t, offset, n_el * tsize // block))

    align = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise ModelFormatError(f"{name} is corrupt: bad general.alignment {align!r}.")
    data_offset = (cur.pos + align - 1) // align * align
    data_end = max((t.offset + t.n_bytes for t in tensors), default=0)
    if data_offset + data_end > file_size:
        raise ModelFormatError(
            f"{name} is truncated: its tensors need {data_offset + data_end} bytes but the file has "
            f"{file_size}. The download is incomplete; download it again."
        )
    info = GGUFInfo(
        path=str(path), version=version, file_size=file_size, metadata=meta, array_lengths=lengths,
        tensors=tensors, data_offset=data_offset,
    )
    _derive(info)
    return info


def _int(v: Any, default: int = 0) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
        return int(max(v))
    return default


def _derive(info: GGUFInfo) -> None:
    m = info.metadata
    arch = m.get("general.architecture")
    info.architecture = arch if isinstance(arch, str) else ""
    nm = m.get("general.name")
    info.name = nm if isinstance(nm, str) else ""
    a = info.architecture

    def k(suffix: str, default: Any = None) -> Any:
        return m.get(f"{a}.{suffix}", default)

    info.n_layers = _int(k("block_count"))
    # Every count read from the file is bounded before anything is sized by it: a header that says
    # 400,000,000 layers must not allocate 400,000,000 of anything (nor make the fitter loop).
    if not 0 <= info.n_layers <= LLAMA_MAX_LAYERS:
        raise ModelFormatError(
            f"{Path(info.path).name} is corrupt or not for llama.cpp: it claims {info.n_layers:,} layers "
            f"(llama.cpp supports at most {LLAMA_MAX_LAYERS}).")
    info.context_length = _int(k("context_length"))
    info.n_embd = _int(k("embedding_length"))
    info.n_ff = _int(k("feed_forward_length"))
    info.n_head = _int(k("attention.head_count"))
    hkv = k("attention.head_count_kv")
    if isinstance(hkv, list):
        info.n_head_kv_per_layer = [int(x) for x in hkv[:LLAMA_MAX_LAYERS]]
    info.n_head_kv = _int(hkv, info.n_head)
    head_dim = info.n_embd // info.n_head if info.n_head else 0
    info.head_dim_k = _int(k("attention.key_length"), head_dim)
    info.head_dim_v = _int(k("attention.value_length"), head_dim)
    info.n_vocab = _int(k("vocab_size")) or info.array_lengths.get("tokenizer.ggml.tokens", 0)
    tmpl = m.get("tokenizer.chat_template")
    info.chat_template = tmpl if isinstance(tmpl, str) else ""
    info.expert_count = _int(k("expert_count"))
    info.expert_used_count = _int(k("expert_used_count"))
    info.sliding_window = _int(k("attention.sliding_window"))

    # sizes
    layers = [0] * info.n_layers
    non_layer = total = 0
    for t in info.tensors:
        total += t.n_bytes
        mt = _LAYER_RE.match(t.name)
        if mt and int(mt.group(1)) < info.n_layers:
            layers[int(mt.group(1))] += t.n_bytes
        else:
            non_layer += t.n_bytes
        if t.name == "token_embd.weight":
            info.token_embd_bytes = t.n_bytes
        elif t.name.startswith(("output.", "output_norm.")):
            info.output_bytes += t.n_bytes
    if info.tied_output:
        info.output_bytes += info.token_embd_bytes
    info.total_tensor_bytes = total
    info.layer_bytes = layers
    info.non_layer_bytes = non_layer

    ft = m.get("general.file_type")
    info.file_type = ft if isinstance(ft, int) and not isinstance(ft, bool) else None
    label = FILE_TYPES.get(info.file_type) if info.file_type is not None else None
    if not label:
        # majority (by bytes) over the 2-D weight tensors
        by_type: Counter[str] = Counter()
        for t in info.tensors:
            if len(t.shape) >= 2:
                by_type[t.type_name] += t.n_bytes
        label = by_type.most_common(1)[0][0] if by_type else ""
    info.quantization = label


_EPS_KEYS = ("attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon")


def check_runnable(info: GGUFInfo) -> None:
    """Refuse, with the reason, a GGUF that parses but that llama.cpp cannot run (or that would
    abort it): checked at import and discovery, cheaply, from the header alone. The engine's child
    process stays the guarantee for whatever this does not catch."""
    name = Path(info.path).name

    def bad(why: str) -> ModelFormatError:
        return ModelFormatError(f"{name} cannot be used: {why}. The file is damaged or was not made for llama.cpp.")

    if not info.tensors:
        raise bad("it holds no tensors")
    if not info.architecture:
        raise bad("it names no architecture (general.architecture)")
    if not 1 <= info.n_layers <= LLAMA_MAX_LAYERS:
        raise bad(f"it claims {info.n_layers} layers (llama.cpp runs 1 to {LLAMA_MAX_LAYERS})")
    for key, val in (("embedding_length", info.n_embd), ("attention.head_count", info.n_head)):
        if val <= 0:
            raise bad(f"{info.architecture}.{key} is {val}")
    if info.n_head_kv < 0 or info.n_head_kv > info.n_head or any(
            h < 0 or h > info.n_head for h in info.n_head_kv_per_layer or []):
        raise bad(f"its key/value head count ({info.n_head_kv}) is outside 0..{info.n_head}")
    if not 0 < info.context_length <= MAX_CONTEXT:
        raise bad(f"its context length is {info.context_length}")
    for suffix in _EPS_KEYS:
        eps = info.arch_key(suffix)
        if eps is not None and not (isinstance(eps, (int, float)) and 0 < eps < 1):  # NaN fails both
            raise bad(f"{info.architecture}.{suffix} is {eps!r} (a norm epsilon must be a small positive number)")
    align = info.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    seen: set[str] = set()
    for t in info.tensors:
        if t.name in seen:
            raise bad(f"the tensor {t.name!r} appears twice")
        seen.add(t.name)
        if t.offset % align:
            raise bad(f"the tensor {t.name!r} is not aligned to {align} bytes")
        if any(d <= 0 for d in t.shape):
            raise bad(f"the tensor {t.name!r} has an empty dimension {t.shape}")
        if len(t.shape) == 1 and t.name.endswith("norm.weight") and t.type_id != 0:
            raise bad(f"the norm tensor {t.name!r} is stored as {t.type_name}; llama.cpp needs F32")
    # llama.cpp's loader wants the tensors packed in table order, each at the aligned end of the last
    expected = 0
    for t in info.tensors:
        if t.offset != expected:
            raise bad(f"the tensor {t.name!r} starts at byte {t.offset} of the data, not at {expected} "
                      "(overlapping, misplaced or mistyped tensors)")
        expected += (t.n_bytes + align - 1) // align * align
    if "token_embd.weight" not in seen:
        raise bad("the tensor 'token_embd.weight' is missing")
    layers_seen = {int(m.group(1)) for m in map(_LAYER_RE.match, seen) if m}
    missing = [i for i in range(info.n_layers) if i not in layers_seen]
    if missing:
        raise bad(f"layer {missing[0]} has no tensors ({len(missing)} of {info.n_layers} layers are missing)")
    extra = sorted(i for i in layers_seen if i >= info.n_layers)
    if extra:
        raise bad(f"it has tensors for layer {extra[0]}, beyond the header's {info.n_layers} layers")
    by_name = {t.name: t for t in info.tensors}
    _check_shapes(info, by_name, bad)


# Architectures whose attention and feed-forward tensors have llama's shapes (q/k/v/output, gate/up/down).
_LLAMA_LIKE = frozenset({"llama", "mistral", "qwen2", "qwen3", "granite", "smollm3"})
_LLAMA_TOP_LEVEL = frozenset({"token_embd.weight", "token_embd_norm.weight", "output_norm.weight", "output.weight",
                              "output_norm.bias", "output.bias", "rope_freqs.weight"})


def _check_shapes(info: GGUFInfo, by_name: dict, bad) -> None:
    """Tensor shapes against the header's sizes: what llama.cpp checks before it builds the graph."""
    e = info.n_embd

    def want(name: str, *shape: int) -> None:
        t = by_name.get(name)
        if t is not None and tuple(t.shape) != shape:
            raise bad(f"the tensor {name!r} has shape {list(t.shape)} but the header's sizes need {list(shape)}")

    emb = by_name["token_embd.weight"]
    if emb.shape[0] != e:
        raise bad(f"the embedding width in the header ({e}) does not match token_embd.weight {list(emb.shape)}")
    n_tokens = info.array_lengths.get("tokenizer.ggml.tokens")
    if n_tokens and len(emb.shape) > 1 and emb.shape[1] != n_tokens:
        raise bad(f"the vocabulary has {n_tokens} tokens but token_embd.weight has {emb.shape[1]} rows")
    want("output_norm.weight", e)
    rope = info.arch_key("rope.dimension_count")
    if isinstance(rope, int) and not (0 < rope <= max(info.head_dim_k, 1) and rope % 2 == 0):
        raise bad(f"rope.dimension_count is {rope} for heads of {info.head_dim_k}")
    if info.architecture not in _LLAMA_LIKE:
        return
    if info.n_embd % info.n_head and info.arch_key("attention.key_length") is None:
        raise bad(f"the embedding width {e} is not a multiple of the {info.n_head} heads")
    hk, hv, ff = info.head_dim_k, info.head_dim_v, info.n_ff
    need = ["output_norm.weight"] + [f"blk.{i}.{n}.weight" for i in range(info.n_layers)
                                     for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output")]
    if info.expert_count == 0:
        need += [f"blk.{i}.{n}.weight" for i in range(info.n_layers) for n in ("ffn_norm", "ffn_up", "ffn_down")]
    odd = [n for n in by_name if not _LAYER_RE.match(n) and n not in _LLAMA_TOP_LEVEL]
    if odd:
        raise bad(f"it has a tensor {odd[0][:60]!r} that a {info.architecture} model does not have")
    lost = [n for n in need if n not in by_name]
    if lost:
        raise bad(f"the tensor {lost[0]!r} is missing" + (f" ({len(lost)} are)" if len(lost) > 1 else ""))
    for i in range(info.n_layers):
        kv = (info.n_head_kv_per_layer or [info.n_head_kv] * info.n_layers)[min(i, len(info.n_head_kv_per_layer or
                                                                                      [0]) - 1)] \
            if info.n_head_kv_per_layer else info.n_head_kv
        want(f"blk.{i}.attn_norm.weight", e)
        want(f"blk.{i}.attn_q.weight", e, info.n_head * hk)
        want(f"blk.{i}.attn_k.weight", e, kv * hk)
        want(f"blk.{i}.attn_v.weight", e, kv * hv)
        want(f"blk.{i}.attn_output.weight", info.n_head * hv, e)
        if ff > 0 and info.expert_count == 0:
            want(f"blk.{i}.ffn_norm.weight", e)
            want(f"blk.{i}.ffn_gate.weight", e, ff)
            want(f"blk.{i}.ffn_up.weight", e, ff)
            want(f"blk.{i}.ffn_down.weight", ff, e)
    if ff <= 0 and any(".ffn_up.weight" in n for n in by_name):
        raise bad(f"feed_forward_length is {ff}")


def read_gguf_metadata(path: str | Path) -> GGUFInfo:
    """Parse a GGUF file's header (metadata and tensor table), never its tensor data."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < 24:
                raise ModelFormatError(f"{path.name} is not a GGUF file (only {size} bytes); it may be truncated.")
            try:
                buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # e.g. a pipe or a file system without mmap
                f.seek(0)
                buf = f.read()
            try:
                return _parse(buf, path, size)
            finally:
                if isinstance(buf, mmap.mmap):
                    buf.close()
    except ModelFormatError:
        raise
    except FileNotFoundError:
        raise ModelFormatError(f"No such file: {path}") from None
    except IsADirectoryError:
        raise ModelFormatError(f"{path} is a folder, not a GGUF file.") from None
    except OSError as exc:
        raise ModelFormatError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    except (struct.error, OverflowError, MemoryError, ValueError, RecursionError):
        raise ModelFormatError(f"{path.name} is corrupt: its header cannot be read. Download the file again.") from None
