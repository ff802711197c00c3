"""How many CPU threads llama.cpp should use, as llama.cpp's own tools decide it: one per
physical core this process may run on (``cpu_get_num_math()``: hyper-threads and cores outside
the affinity mask do not count), for decoding and for the prompt batch alike.

Why not llama-cpp-python's default: it takes half the *logical* CPUs for decoding (one thread on a
2-core machine), which halved the app's decode speed against ``llama-bench`` (issue 11).
"""

from __future__ import annotations

import os

FLASH_ATTN_MODES = ("auto", "on", "off")
KV_TYPES = ("f16", "q8_0", "q4_0")


def physical_cores() -> int:
    """Physical cores of the machine (psutil), else the logical CPU count."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - psutil missing or no answer on this platform
        n = None
    return int(n or os.cpu_count() or 1)


def allowed_cpus() -> int:
    """Logical CPUs this process may run on (taskset, cgroup cpusets), else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # macOS / Windows have no sched_getaffinity
        return os.cpu_count() or 1


def auto_threads() -> int:
    """Decode and batch threads for llama.cpp: physical cores, within the affinity mask."""
    logical = os.cpu_count() or 1
    phys = physical_cores()
    allowed = allowed_cpus()
    if allowed < logical:  # restricted: count the allowed share of the physical cores
        phys = max(1, round(phys * allowed / logical))
    return max(1, min(phys, allowed))


def flash_attn_request(setting: str, n_gpu_layers: int, kv_type: str = "f16") -> str:
    """What to ask llama.cpp for: "on", "off", or "auto" (llama.cpp decides per device).

    ``auto`` is llama.cpp's own auto, except on a CPU-only load with an f16 KV cache: there the
    portable build decodes faster without flash attention once the chat holds a few hundred
    tokens (llama-bench here, 2 threads: 169 vs 185 tok/s at depth 0, but 149 vs 112 at 256, 102 vs
    93 at 1024, 91 vs 66 at 2048), while flash attention only wins on the prompt (10-25 %) and the
    first ~200 tokens. A quantized KV cache needs it, so it stays llama.cpp's auto then."""
    if setting != "auto":
        return setting
    if kv_type == "f16" and not n_gpu_layers:
        return "off"
    return "auto"


def resolve_threads(n_threads: int | None, n_threads_batch: int | None) -> tuple[int, int]:
    """(decode, batch) threads: a positive setting as given, 0/None for auto."""
    auto = auto_threads()
    return (int(n_threads) if n_threads and n_threads > 0 else auto,
            int(n_threads_batch) if n_threads_batch and n_threads_batch > 0 else auto)
