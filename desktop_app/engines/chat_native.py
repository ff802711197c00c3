"""How the chat engine asks llama.cpp for its native speed (issue 11): threads as llama.cpp's own
tools choose them, flash attention ``auto``, the KV cache type, prompt-lookup decoding, and thread
changes on the live context. Imported in the engine's child only (llama_cpp is imported lazily).

Flash attention ``auto``: llama.cpp decides per device when it creates the context (on where the
backend has the kernels), except on CPU-only loads with an f16 KV cache, where decoding is faster
without it past a few hundred tokens (``cpu_threads.flash_attn_request``). llama-cpp-python
0.3.x only passes enabled/disabled, from a bool; for ``auto`` the constant it reads for "enabled"
is made to read AUTO while ``Llama()`` builds its context parameters (one load at a time: a lock),
and what llama.cpp chose is read from its log ("Flash Attention enabled").
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from typing import Any, Iterator

from desktop_app.core.cpu_threads import flash_attn_request, resolve_threads

log = logging.getLogger(__name__)

GGML_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}  # ggml_type values (llama_cpp.GGML_TYPE_*)
PROMPT_LOOKUP_TOKENS = 2  # drafted tokens per step: the library's advice for a CPU (10 on a GPU)
_LOCK = threading.Lock()
_keep: list = []  # ctypes callbacks must outlive their registration


def flash_request(cfg: Any) -> str:
    """The flash attention a LoadConfig asks llama.cpp for (``cpu_threads.flash_attn_request``)."""
    return flash_attn_request(cfg.flash_attn, cfg.n_gpu_layers, cfg.kv_type)


def llama_kwargs(cfg: Any) -> dict:
    """``Llama()`` keyword arguments for a LoadConfig's engine options."""
    n_threads, n_threads_batch = resolve_threads(cfg.n_threads, cfg.n_threads_batch)
    kw: dict[str, Any] = {"n_threads": n_threads, "n_threads_batch": n_threads_batch,
                          "flash_attn": flash_request(cfg) != "off"}
    if cfg.kv_type != "f16":
        kw["type_k"] = kw["type_v"] = GGML_TYPES[cfg.kv_type]
    if cfg.prompt_lookup:
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        kw["draft_model"] = LlamaPromptLookupDecoding(num_pred_tokens=PROMPT_LOOKUP_TOKENS)
        kw["logits_all"] = True  # the draft is verified against every drafted position's logits
    return kw


@contextlib.contextmanager
def native_load(flash_attn: str) -> Iterator[list[str]]:
    """Around ``Llama(...)``: ``auto`` flash attention, and llama.cpp's log lines of the load
    (yielded list, filled as it logs; the library's own log callback still gets every line)."""
    from llama_cpp import _logger
    from llama_cpp import llama_cpp as C

    lines: list[str] = []
    library_cb = _logger.llama_log_callback

    @C.llama_log_callback
    def collect(level, text, user_data):
        try:
            lines.append(text.decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - never raise into C
            pass
        library_cb(level, text, user_data)

    with _LOCK:
        _keep.append(collect)
        enabled = C.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if flash_attn == "auto":
            C.LLAMA_FLASH_ATTN_TYPE_ENABLED = C.LLAMA_FLASH_ATTN_TYPE_AUTO
        C.llama_log_set(collect, ctypes.c_void_p(0))
        try:
            yield lines
        finally:
            C.LLAMA_FLASH_ATTN_TYPE_ENABLED = enabled
            C.llama_log_set(library_cb, ctypes.c_void_p(0))


def effective_flash_attn(requested: str, lines: list[str], kv_type: str = "f16") -> str:
    """"on" or "off": what llama.cpp used (``auto`` resolved from its log)."""
    if requested != "auto":
        return requested
    text = "".join(lines)
    if "Flash Attention enabled" in text or "enabling flash_attn" in text:
        return "on"
    if "Flash Attention disabled" in text:
        return "off"
    return "on" if kv_type != "f16" else "off"


def set_threads(llm: Any, n_threads: int, n_threads_batch: int) -> None:
    """Change the live context's decode / batch threads (between two decodes)."""
    from llama_cpp import llama_cpp as C

    C.llama_set_n_threads(llm._ctx.ctx, int(n_threads), int(n_threads_batch))
