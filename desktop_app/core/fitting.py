"""Will this model fit? Memory estimates and load plans for chat (GGUF) and diffusion models.

Chat (llama.cpp) estimate, comparable to the buffers llama.cpp prints when it loads a model:
- weights: tensor bytes from the GGUF header (per layer, plus token embedding / output head);
- KV cache: Σ layers n_ctx × (head_dim_k + head_dim_v) × n_head_kv × 2 bytes (f16, GQA aware;
  q8_0 34/32 bytes an element, q4_0 18/32);
- compute buffer: Ollama's formula for llama-family graphs with llama-cpp-python's default
  n_batch = n_ubatch = 512: b = min(n_ctx, 512), max(4b(1 + 4E + C(1 + H)), 4b(E + V)); with
  flash attention the b × C × H attention scores are never materialised, only the f16 mask:
  max(4b(1 + 4E) + 2bC, 4b(E + V)) (measured on the starter at 8192: 166 MiB without, 98 with);
- output buffer: the logits of one sequence, n_vocab × 4 bytes (prompt-lookup decoding keeps
  the logits of every position: a batch of them in llama.cpp, n_ctx rows in llama-cpp-python).

Speed (CPU plans): decoding streams the active weights once per token; one core streams about
``PER_THREAD_BANDWIDTH``, the memory bus at most ``CPU_BANDWIDTH``.

Plans: ``gpu`` (every layer on the GPU), ``partial`` (the last ``n_gpu_layers`` layers on the
GPU, placed from the last to the first while they fit; fewer than 3 → CPU is faster), ``cpu``
(fits RAM), ``too_large``. Free VRAM (not total) minus a per-GPU reserve (Settings
``vram_reserve_mib``, 512 MiB) is the budget. A GPU the installed llama.cpp build cannot use is
not counted; the plan's note says how to fix the build.

Diffusion: component sizes (safetensors headers: exact parameter counts) at fp16/bf16 on a GPU,
fp32 on a CPU, plus an activation allowance → ``gpu``, ``gpu_offload`` (model CPU offload),
``gpu_sequential_offload``, ``cpu`` or ``too_large``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from desktop_app.core.errors import ModelFormatError
from desktop_app.core.fitting_common import GiB, MiB, RAM_MARGIN, _vram_reserve_bytes  # noqa: F401
from desktop_app.core.hardware import GPU, USABLE_BACKENDS, Hardware, detect_hardware

N_BATCH = 512  # llama-cpp-python's defaults (n_batch, n_ubatch)
N_UBATCH = 512
DEFAULT_CTX = 8192
MIN_CTX = 512
CTX_STEP = 256
MIN_GPU_LAYERS = 3
KV_BYTES = 2  # f16 K and V
KV_TYPE_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}  # bytes an element (ggml block sizes)
CPU_BANDWIDTH = 20e9  # bytes/s a desktop CPU streams through the weights per token (rough)
PER_THREAD_BANDWIDTH = 4e9  # what one decode thread streams (the starter: 2 threads ≈ 80 tok/s here)


# --------------------------------------------------------------------------------------------
# Chat models
# --------------------------------------------------------------------------------------------
@dataclass
class LlmShape:
    """What the estimator needs to know about a chat model (from a GGUF header or a guess)."""

    n_layers: int
    layer_bytes: list[int]
    token_embd_bytes: int
    output_bytes: int  # output head (+ norm) placed with the last layer; token_embd copy when tied
    total_weights_bytes: int  # what llama.cpp maps from the file
    n_embd: int
    n_head: int
    n_head_kv: list[int]  # per layer
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    context_length: int
    swa_layers: list[bool] = field(default_factory=list)
    sliding_window: int = 0
    expert_count: int = 0
    expert_used_count: int = 0
    architecture: str = "llama"
    quantization: str = ""
    approximate: bool = False
    tied_output: bool = False  # no output.weight: the token embedding doubles as the output head
    kv_type: str = "f16"  # the load's KV cache type (KV_TYPE_BYTES)
    flash_attn: bool = True  # the load uses flash attention (the app's default, auto, on CPUs and GPUs)
    logits_all: bool = False  # prompt-lookup decoding keeps every position's logits

    @classmethod
    def from_gguf(cls, info) -> "LlmShape":
        n = info.n_layers
        if n <= 0 or not info.n_embd:
            raise ModelFormatError(
                f"{Path(info.path).name} has no layer count or embedding size for architecture "
                f"{info.architecture!r}; it is not a chat model Atelier can plan for."
            )
        if info.n_head_kv_per_layer and len(info.n_head_kv_per_layer) == n:
            kv = list(info.n_head_kv_per_layer)
        else:
            kv = [info.n_head_kv or info.n_head or 1] * n
        swa = [False] * n
        if info.sliding_window:
            swa = _swa_pattern(info.architecture, n, info.metadata)
        return cls(
            n_layers=n, layer_bytes=list(info.layer_bytes), token_embd_bytes=info.token_embd_bytes,
            output_bytes=info.output_bytes, total_weights_bytes=info.total_tensor_bytes,
            n_embd=info.n_embd, n_head=info.n_head or 1, n_head_kv=kv,
            head_dim_k=info.head_dim_k or (info.n_embd // max(1, info.n_head)),
            head_dim_v=info.head_dim_v or (info.n_embd // max(1, info.n_head)),
            n_vocab=info.n_vocab or 32000, context_length=info.context_length or 4096,
            swa_layers=swa, sliding_window=info.sliding_window, expert_count=info.expert_count,
            expert_used_count=info.expert_used_count, architecture=info.architecture,
            quantization=info.quantization, tied_output=info.tied_output,
        )

    # --- costs at a context size ---------------------------------------------------------
    def kv_layer_bytes(self, n_ctx: int) -> list[int]:
        cells_full = _pad(n_ctx)
        out = []
        for i in range(self.n_layers):
            cells = cells_full
            if self.swa_layers and self.swa_layers[i] and self.sliding_window:
                cells = min(cells_full, _pad(self.sliding_window + N_UBATCH))
            out.append(int(cells * (self.head_dim_k + self.head_dim_v) * self.n_head_kv[i]
                           * KV_TYPE_BYTES.get(self.kv_type, KV_BYTES)))
        return out

    def compute_bytes(self, n_ctx: int) -> int:
        b = min(n_ctx, N_UBATCH)
        e, c, h, v = self.n_embd, _pad(n_ctx), self.n_head, self.n_vocab
        if self.flash_attn:  # no b × C × H scores: the f16 mask, b × C × 2 bytes, remains
            return max(4 * b * (1 + 4 * e) + 2 * b * c + MiB // 2, 4 * b * (e + v))  # + graph bookkeeping
        return max(4 * b * (1 + 4 * e + c * (1 + h)), 4 * b * (e + v))

    def host_compute_bytes(self) -> int:
        """Host compute buffer when every layer is offloaded (graph inputs, embedding rows)."""
        return 4 * N_UBATCH * (self.n_embd + 64) + 4 * N_UBATCH * N_UBATCH

    def output_buffer_bytes(self, n_ctx: int = 0) -> int:
        if self.logits_all:
            return self.n_vocab * 4 * (N_BATCH + n_ctx)
        return self.n_vocab * 4


def _pad(n_ctx: int) -> int:
    return n_ctx  # llama.cpp >= b6xxx no longer pads the KV cache of a single sequence


def _swa_pattern(arch: str, n: int, meta: dict) -> list[bool]:
    pat = meta.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pat, list) and len(pat) == n:
        return [bool(x) for x in pat]
    period = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2}.get(arch, 0)
    if isinstance(pat, int) and pat > 0:
        period = pat
    if not period:
        return [False] * n
    # every `period`-th layer is global (full attention), the others use the window
    return [(i + 1) % period != 0 for i in range(n)]


@dataclass
class LlmPlan:
    plan: str  # gpu | partial | cpu | too_large
    n_gpu_layers: int  # layers placed on the GPU (all layers = n_layers; never -1)
    n_layers: int
    n_ctx: int
    max_ctx: int  # the largest context that fits with this placement (0 when too_large)
    context_length: int  # the model's trained context
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    output_bytes: int
    estimated_bytes: int  # weights + KV + compute + output (what llama.cpp will allocate)
    gpu_bytes: int  # of which on the GPU(s)
    ram_bytes: int  # of which in system RAM
    note: str = ""
    speed: str = ""  # fast | ok | slow (a rough tokens/s class)
    quantization: str = ""
    approximate: bool = False  # estimated from the file size only (no header read)
    gpus_used: int = 0
    kv_type: str = "f16"
    flash_attn: bool = True
    threads: int = 0  # decode threads the speed estimate assumes (CPU plans)
    tokens_per_s: float = 0.0  # the estimate behind ``speed`` (CPU plans)
    tensor_split: list[float] = field(default_factory=list)  # each GPU's share (several GPUs)

    @property
    def llama_n_gpu_layers(self) -> int:
        """The value for ``llama_cpp.Llama(n_gpu_layers=...)``: -1 (all, output head too) for a
        full-GPU plan, else the count."""
        return -1 if self.plan == "gpu" else self.n_gpu_layers

    @property
    def fits(self) -> bool:
        return self.plan != "too_large"

    @property
    def badge(self) -> str:
        if self.plan == "gpu":
            return "Full GPU"
        if self.plan == "partial":
            return f"Partial {self.n_gpu_layers}/{self.n_layers} layers"
        if self.plan == "cpu":
            return f"CPU · {self.speed or 'ok'}"
        return "Too large"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["badge"] = self.badge
        d["llama_n_gpu_layers"] = self.llama_n_gpu_layers
        return d


def _usable_gpus(hw: Hardware) -> list[GPU]:
    return [g for g in hw.gpus if hw.llama_backend in USABLE_BACKENDS.get(g.vendor, ())]


def _speed(weights_bytes: int, shape: LlmShape, hw: Hardware, threads: int) -> tuple[str, float]:
    """(fast | ok | slow, estimated decode tokens/s) on the CPU with ``threads`` decode threads."""
    active = weights_bytes
    if shape.expert_count and shape.expert_used_count:
        active = int(weights_bytes * max(0.1, shape.expert_used_count / shape.expert_count) * 1.3)
    bw = min(CPU_BANDWIDTH, PER_THREAD_BANDWIDTH * max(1, threads))
    bw *= 1.0 if "avx2" in hw.cpu_flags or "neon" in hw.cpu_flags else 0.5
    tps = bw / max(1, active)
    return ("fast" if tps >= 15 else "ok" if tps >= 4 else "slow"), round(tps, 1)


def _tensor_split(shape: LlmShape, gpus: list[GPU], reserve: int, n_ctx: int) -> list[float]:
    """Each GPU's share of the layers, from what it has free after its reserve and its own
    compute buffer (llama.cpp splits layers by these proportions); empty for one GPU."""
    if len(gpus) < 2:
        return []
    room = [max(0, g.vram_free_bytes - reserve - shape.compute_bytes(n_ctx)) for g in gpus]
    total = sum(room)
    return [round(r / total, 4) for r in room] if total else []


class _Placement:
    """Costs of one (n_ctx, n_gpu_layers) placement."""

    def __init__(self, shape: LlmShape, hw: Hardware, n_ctx: int, k: int, gpus: list[GPU], reserve: int):
        self.k = k
        n = shape.n_layers
        kv = shape.kv_layer_bytes(n_ctx)
        self.kv = sum(kv)
        self.compute = shape.compute_bytes(n_ctx)
        self.output = shape.output_buffer_bytes(n_ctx)
        full = k >= n
        gpu_w = (sum(shape.layer_bytes[n - k:]) + (shape.output_bytes if full else 0)) if k else 0
        gpu_kv = sum(kv[n - k:]) if k else 0
        dup = shape.token_embd_bytes if (full and shape.tied_output) else 0  # tied head copied to the GPU
        n_used = max(1, min(len(gpus), k)) if k else 0
        self.gpus_used = n_used
        gpu_compute = self.compute * n_used
        # host compute buffer: small (inputs, embedding rows) when every layer is offloaded,
        # a full graph's worth when the CPU runs some layers itself
        cpu_compute = shape.host_compute_bytes() if full else self.compute
        self.weights = shape.total_weights_bytes + dup
        self.gpu = gpu_w + gpu_kv + gpu_compute
        self.ram = (self.weights - gpu_w) + (self.kv - gpu_kv) + cpu_compute + self.output
        self.total = self.weights + self.kv + gpu_compute + cpu_compute + self.output
        self.gpu_budget = sum(max(0, g.vram_free_bytes - reserve) for g in gpus[: max(1, n_used)]) if k else 0
        # per-GPU check: each used GPU must hold its compute buffer
        self.gpu_ok = (not k) or (self.gpu <= self.gpu_budget)
        ram_budget = max(0, hw.ram_available_bytes - RAM_MARGIN)
        if any(g.unified_memory for g in gpus[: max(1, n_used)]) and k:
            ram_budget -= self.gpu  # Apple: the GPU share comes out of the same RAM
        self.ram_ok = self.ram <= ram_budget


def _place(shape: LlmShape, hw: Hardware, n_ctx: int, reserve: int, allow_gpu: bool = True) -> tuple[str, _Placement]:
    gpus = _usable_gpus(hw) if allow_gpu else []
    n = shape.n_layers
    if gpus:
        full = _Placement(shape, hw, n_ctx, n, gpus, reserve)
        if full.gpu_ok and full.ram_ok:
            return "gpu", full
        budget = sum(max(0, g.vram_free_bytes - reserve) for g in gpus)
        kv = shape.kv_layer_bytes(n_ctx)
        avail = budget - shape.compute_bytes(n_ctx) * len(gpus)
        k = 0
        for i in range(n - 1, -1, -1):  # from the last layer to the first
            need = shape.layer_bytes[i] + kv[i]
            if need > avail:
                break
            avail -= need
            k += 1
        k = min(k, n - 1)
        if k >= MIN_GPU_LAYERS:
            part = _Placement(shape, hw, n_ctx, k, gpus, reserve)
            while part.k >= MIN_GPU_LAYERS and not part.gpu_ok:
                part = _Placement(shape, hw, n_ctx, part.k - 1, gpus, reserve)
            if part.k >= MIN_GPU_LAYERS and part.ram_ok:
                return "partial", part
    cpu = _Placement(shape, hw, n_ctx, 0, [], reserve)
    if cpu.ram_ok:
        return "cpu", cpu
    return "too_large", cpu


def _max_ctx(shape: LlmShape, hw: Hardware, k: int, reserve: int, allow_gpu: bool) -> int:
    """Largest context (multiple of 256, ≤ the model's) that still fits with k GPU layers."""
    gpus = _usable_gpus(hw) if allow_gpu and k else []

    def ok(c: int) -> bool:
        p = _Placement(shape, hw, c, k, gpus, reserve)
        return p.gpu_ok and p.ram_ok

    hi_cap = max(MIN_CTX, shape.context_length)
    if not ok(MIN_CTX):
        return 0
    if ok(hi_cap):
        return hi_cap
    lo, hi = MIN_CTX // CTX_STEP, hi_cap // CTX_STEP  # ok(lo*STEP), not ok(hi*STEP)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid * CTX_STEP):
            lo = mid
        else:
            hi = mid
    return lo * CTX_STEP


def plan_shape(shape: LlmShape, hw: Hardware | None = None, n_ctx: int | None = None,
               vram_reserve_mib: int | None = None, kv_type: str = "f16", flash_attn: bool = True,
               threads: int | None = None, prompt_lookup: bool = False) -> LlmPlan:
    """Plan a load for a model described by an LlmShape, with the engine options of the load
    (KV cache type, flash attention, decode threads: None = auto, prompt-lookup decoding)."""
    import dataclasses

    from desktop_app.core.cpu_threads import auto_threads

    hw = hw or detect_hardware()
    if kv_type not in KV_TYPE_BYTES:
        raise ModelFormatError(f"Unknown KV cache type {kv_type!r}: use {', '.join(KV_TYPE_BYTES)}.")
    shape = dataclasses.replace(shape, kv_type=kv_type, flash_attn=bool(flash_attn or kv_type != "f16"),
                                logits_all=bool(prompt_lookup))
    # the plan is for ``hw`` (maybe a profile of another machine): its physical cores, unless set
    threads = int(threads) if threads else (int(hw.cpu_cores) if hw.cpu_cores else auto_threads())
    reserve = _vram_reserve_bytes(vram_reserve_mib)
    notes: list[str] = []
    ctx_len = max(MIN_CTX, shape.context_length)
    allow_gpu = True
    warn = hw.backend_warning()
    if warn:
        notes.append(warn)

    if n_ctx is not None:
        if n_ctx < 1:
            raise ModelFormatError(f"Context length must be positive, not {n_ctx}.")
        if n_ctx > ctx_len:
            notes.append(f"Context {n_ctx} is beyond the model's trained {ctx_len}; planned for {ctx_len}.")
            n_ctx = ctx_len
        chosen = n_ctx
        kind, pl = _place(shape, hw, chosen, reserve, allow_gpu)
    else:
        target = min(ctx_len, DEFAULT_CTX)
        kind, pl = _place(shape, hw, target, reserve, allow_gpu)
        chosen = target
        if kind in ("partial", "cpu") and _usable_gpus(hw):
            # a full-GPU load at a still useful context beats a partial one at a longer context
            c = min(target, 4096)
            if c < target:
                k2, p2 = _place(shape, hw, c, reserve, allow_gpu)
                if k2 == "gpu":
                    kind, pl, chosen = k2, p2, c
        c = target
        while kind == "too_large" and c > MIN_CTX:
            c = max(MIN_CTX, c // 2)
            kind, pl = _place(shape, hw, c, reserve, allow_gpu)
            chosen = c
        if kind == "too_large":
            kind, pl = _place(shape, hw, target, reserve, allow_gpu)
            chosen = target
        elif chosen < target:
            notes.append(f"Context reduced to {chosen} tokens to fit this machine.")

    k = pl.k
    max_ctx = _max_ctx(shape, hw, k, reserve, allow_gpu) if kind != "too_large" else 0
    if kind == "too_large":
        need = pl.total
        if n_ctx is not None:
            fit_any = _max_ctx(shape, hw, 0, reserve, False)
            if fit_any:
                notes.append(f"Does not fit at {chosen} tokens of context; at most {fit_any} fit on the CPU.")
        notes.append(
            f"Needs about {need / GiB:.1f} GiB but only {max(0, hw.ram_available_bytes) / GiB:.1f} GiB RAM is free"
            + (f" and {sum(g.vram_free_bytes for g in _usable_gpus(hw)) / GiB:.1f} GiB VRAM" if _usable_gpus(hw) else "")
            + ". Choose a smaller model or a smaller quantization."
        )
    elif kind == "partial":
        notes.append(f"{k} of {shape.n_layers} layers on the GPU, the rest on the CPU (slower than a full GPU load).")
    speed, tps = _speed(pl.weights, shape, hw, threads) if kind == "cpu" else ("", 0.0)
    split = _tensor_split(shape, _usable_gpus(hw)[: pl.gpus_used], reserve, chosen) if kind in ("gpu", "partial") else []
    if shape.approximate:
        notes.append("Estimated from the file size (no header read yet).")
    return LlmPlan(
        plan=kind, n_gpu_layers=k if kind in ("gpu", "partial") else 0, n_layers=shape.n_layers,
        n_ctx=chosen, max_ctx=max_ctx, context_length=shape.context_length,
        weights_bytes=pl.weights, kv_cache_bytes=pl.kv,
        compute_bytes=pl.total - pl.weights - pl.kv - pl.output, output_bytes=pl.output,
        estimated_bytes=pl.total, gpu_bytes=pl.gpu if kind in ("gpu", "partial") else 0,
        ram_bytes=pl.ram, note=" ".join(notes), speed=speed, quantization=shape.quantization,
        approximate=shape.approximate, gpus_used=pl.gpus_used if kind in ("gpu", "partial") else 0,
        kv_type=shape.kv_type, flash_attn=shape.flash_attn, threads=threads, tokens_per_s=tps, tensor_split=split,
    )


def plan_llm(path: str | Path, hw: Hardware | None = None, n_ctx: int | None = None,
             vram_reserve_mib: int | None = None, **engine: Any) -> LlmPlan:
    """Plan loading a GGUF chat model (reads only its header); ``engine``: plan_shape's options."""
    from desktop_app.core.gguf_meta import read_gguf_metadata

    info = read_gguf_metadata(path)
    return plan_shape(LlmShape.from_gguf(info), hw, n_ctx, vram_reserve_mib, **engine)


# (params in billions, layers, embedding, heads, kv heads, vocab) for typical llama-family sizes
_TYPICAL = [
    (0.135, 30, 576, 9, 3, 49152),
    (0.5, 24, 896, 14, 2, 151936),
    (1.2, 16, 2048, 32, 8, 128256),
    (1.7, 28, 2048, 16, 8, 151936),
    (3.2, 28, 3072, 24, 8, 128256),
    (4.0, 36, 2560, 32, 8, 151936),
    (8.0, 32, 4096, 32, 8, 128256),
    (12.0, 40, 5120, 32, 8, 131072),
    (14.0, 40, 5120, 40, 8, 152064),
    (24.0, 40, 5120, 32, 8, 131072),
    (32.0, 64, 5120, 64, 8, 152064),
    (70.0, 80, 8192, 64, 8, 128256),
    (123.0, 88, 12288, 96, 8, 32768),
    (405.0, 126, 16384, 128, 8, 128256),
]


def estimate_llm_from_size(
    size_bytes: int,
    n_layers: int | None = None,
    n_ctx: int | None = None,
    params_b: float | None = None,
    hw: Hardware | None = None,
    context_length: int | None = None,
    n_embd: int | None = None,
    n_head: int | None = None,
    n_head_kv: int | None = None,
    n_vocab: int | None = None,
    quantization: str = "",
    vram_reserve_mib: int | None = None,
) -> LlmPlan:
    """An approximate plan for a GGUF we only know by its size (catalog entries, hub listings)."""
    shape = shape_from_size(size_bytes, n_layers, params_b, context_length, n_embd, n_head, n_head_kv, n_vocab,
                            quantization)
    return plan_shape(shape, hw, n_ctx, vram_reserve_mib)


def shape_from_size(size_bytes: int, n_layers: int | None = None, params_b: float | None = None,
                    context_length: int | None = None, n_embd: int | None = None, n_head: int | None = None,
                    n_head_kv: int | None = None, n_vocab: int | None = None, quantization: str = "") -> LlmShape:
    """An approximate LlmShape for a GGUF known only by its size (and what a listing says)."""
    if size_bytes <= 0:
        raise ModelFormatError("A model size must be positive to estimate its fit.")
    if params_b is None:
        bits = _QUANT_BITS.get(quantization.upper(), 4.85) if quantization else 4.85
        params_b = size_bytes * 8 / bits / 1e9
    typ = min(_TYPICAL, key=lambda t: abs(_log(t[0]) - _log(params_b)))
    L = n_layers or typ[1]
    E = n_embd or typ[2]
    H = n_head or typ[3]
    HKV = n_head_kv or typ[4]
    V = n_vocab or typ[5]
    head_dim = E // H if H else 128
    bpw = size_bytes / max(1.0, params_b * 1e9)  # bytes per weight
    embd = int(min(size_bytes * 0.2, V * E * bpw))
    out = int(min(size_bytes * 0.2, V * E * max(bpw, 0.82)))  # output head is usually Q6_K or better
    per_layer = max(1, (size_bytes - embd - out) // L)
    return LlmShape(
        n_layers=L, layer_bytes=[per_layer] * L, token_embd_bytes=embd, output_bytes=out,
        total_weights_bytes=int(size_bytes), n_embd=E, n_head=H, n_head_kv=[HKV] * L,
        head_dim_k=head_dim, head_dim_v=head_dim, n_vocab=V,
        context_length=context_length or DEFAULT_CTX, quantization=quantization, approximate=True,
    )


_QUANT_BITS = {
    "F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5, "Q6_K": 6.6, "Q5_K_M": 5.7, "Q5_K_S": 5.5,
    "Q5_0": 5.5, "Q5_1": 6.0, "Q4_K_M": 4.85, "Q4_K_S": 4.6, "Q4_0": 4.55, "Q4_1": 5.0,
    "IQ4_XS": 4.3, "IQ4_NL": 4.5, "Q3_K_M": 3.9, "Q3_K_S": 3.5, "Q3_K_L": 4.3, "Q2_K": 3.0,
    "IQ3_XXS": 3.1, "IQ2_XS": 2.4, "IQ2_XXS": 2.1, "IQ1_S": 1.6,
}


def _log(x: float) -> float:

    return math.log(max(x, 1e-3))


# The diffusion half lives in fitting_diffusion; its names are this module's too.
from desktop_app.core.fitting_diffusion import (  # noqa: E402,F401
    DENOISERS, DiffusionPlan, _tensor_params, diffusion_components, plan_diffusion, plan_small_model,
)


def plan_for_record(record: Any, hw: Hardware | None = None, n_ctx: int | None = None):
    """The plan for a library record (ModelRecord or its dict): LlmPlan or DiffusionPlan."""
    get = (lambda k, d=None: record.get(k, d)) if isinstance(record, dict) else (lambda k, d=None: getattr(record, k, d))
    fmt, task, path = get("format", ""), get("task", ""), get("path", "")
    hw = hw or detect_hardware()
    if task in ("upscale", "background_removal"):
        return plan_small_model(int(get("size_bytes", 0) or 0), hw)
    if fmt == "gguf" and task == "chat":
        if path and Path(path).exists():
            return plan_llm(path, hw, n_ctx)
        return estimate_llm_from_size(int(get("size_bytes", 0) or 1), n_ctx=n_ctx, hw=hw,
                                      quantization=get("quantization", "") or "")
    if task == "image" or fmt in ("diffusers", "safetensors"):
        if path and Path(path).exists():
            return plan_diffusion(path, hw)
        size = int(get("size_bytes", 0) or 0)
        return plan_diffusion({"unet": size // 2}, hw)
    raise ModelFormatError(f"Cannot plan for a model of format {fmt!r} and task {task!r}.")
